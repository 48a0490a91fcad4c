"""The command descriptors and the CLI generated from them, against a recorded copy.

A change to a prefix, a parameter, a help line or an argument shows up here as a diff
of tests/unit/golden/commands.json; regenerate it on purpose with
``SDS_UPDATE_GOLDEN=1 pytest tests/unit/test_command_golden.py``.
"""

from __future__ import annotations

import io
import json
import os
import pathlib

from sds.cli import generated
from sds.cli.main import build_parser, main
from sds.common.command import Descriptor, Param, Registry
from sds.common.errors import InvalidArgument
from sds.mon.commands import COMMANDS

GOLDEN = pathlib.Path(__file__).parent / "golden" / "commands.json"


def test_descriptors_and_cli_match_the_golden_copy():
    now = generated.describe()
    if os.environ.get("SDS_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    assert now == json.loads(GOLDEN.read_text())


def test_every_descriptor_has_help_and_a_need():
    for prefix, desc in COMMANDS.items():
        assert desc.help, prefix
        assert desc.access.daemon or desc.needs in ("r", "rw", "rx", "rwx"), prefix


def test_help_json_lists_every_mon_descriptor():
    out = io.StringIO()
    assert main(["help", "--format", "json"], stdout=out) == 0
    listed = {d["prefix"] for d in json.loads(out.getvalue())["mon"]}
    assert listed == set(COMMANDS)


def test_generated_subcommand_takes_its_arguments_from_the_descriptor():
    leaf = build_parser().parse_args(["osd", "map", "rbd", "obj"])
    assert leaf._command.descriptor is COMMANDS["osd map"]
    assert (leaf.pool, leaf.object) == ("rbd", "obj")


def test_validation_names_the_parameter():
    reg = Registry()
    reg.add(Descriptor("x", (Param("n", "int", lo=1, hi=3), Param("s"),
                             Param("f", "float", required=False, default=0.5, lo=0),
                             Param("c", choices=("a", "b"), required=False))))
    desc = reg.find({"prefix": " x "})
    assert desc.validate({"n": "2", "s": "v"})["f"] == 0.5
    for bad, name in (({"s": "v"}, "'n'"), ({"n": 4, "s": "v"}, "'n'"),
                      ({"n": True, "s": "v"}, "'n'"), ({"n": 1, "s": ""}, "'s'"),
                      ({"n": 1, "s": "v", "f": -1}, "'f'"), ({"n": 1, "s": "v", "c": "z"}, "c")):
        try:
            desc.validate(bad)
        except InvalidArgument as e:
            assert name in str(e), (bad, str(e))
        else:
            raise AssertionError(f"{bad} was accepted")


def test_mds_admin_requests_come_from_their_descriptors():
    from sds.fsrules import admin

    req = admin.request("fs quota set", path="/v", max_bytes=10, max_files=2)
    assert (req.op, req.path, req.max_bytes, req.max_files) == \
        (admin.Req.QUOTA_SET, "/v", 10, 2)
    assert admin.request("fs snapshot rm", path="/v", name="s").name == "s"
    for bad in ({"path": "/v", "max_bytes": -1}, {"path": ""}, {}):
        try:
            admin.request("fs quota set", **bad)
        except InvalidArgument:
            continue
        raise AssertionError(f"{bad} was accepted")


def test_the_mds_checks_what_its_admin_descriptors_declare():
    from sds.fsrules import admin
    from sds.mds import authz

    for prefix, desc in admin.MDS.commands.items():
        assert desc.access.service == "mds", prefix
        assert authz.need(admin.Req(op=admin.OPS[prefix])) == desc.needs, prefix
    assert admin.MDS.commands["fs quota set"].needs == "rwx"
    assert admin.MDS.commands["fs snapshot ls"].needs == "r"


def test_pg_commands_need_osd_caps_on_the_pool():
    from sds.osd.pg_commands import COMMANDS as PG

    assert PG.commands["query"].needs == "r" and PG.commands["repair"].needs == "rwx"
    assert {d.access.service for d in PG.commands.values()} == {"osd"}
