"""The `sds` subcommands generated from descriptors send what the hand-written ones sent.

A recording Rados answers every monitor command with a canned reply and keeps what
it was sent, so each case checks the JSON command a CLI spelling turns into (the
shapes a descriptor's `Cli` declares: word, pairs, one id, confirmation flags) and
that garbage fails in the CLI with EINVAL before anything is sent.
"""

from __future__ import annotations

import errno
import io
import json

import pytest

from sds.cli.commands import COMMANDS as CLI_COMMANDS
from sds.cli.main import build_parser, main
from sds.fsrules.admin import MDS
from sds.mon.commands import COMMANDS as MON


class RecordingRados:
    def __init__(self, reply: dict):
        self.reply, self.sent = reply, []

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return None

    async def mon_command(self, cmd: dict) -> dict:
        self.sent.append(cmd)
        return dict(self.reply)


def run(argv: list[str], reply: dict | None = None) -> tuple[int, list[dict], str, str]:
    rados = RecordingRados(reply or {})
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, rados_factory=lambda *a: rados, stdout=out, stderr=err)
    return code, rados.sent, out.getvalue(), err.getvalue()


def test_no_declared_command_is_hand_written():
    """A CLI path that names a monitor or MDS command is generated from its descriptor."""
    declared = {path: d for d in (*MON.values(), *MDS.commands.values()) for path in d.paths}
    del declared["help"]  # `sds help` lists the CLI itself, offline; the mon's lists its own
    for command in CLI_COMMANDS:
        for path in command.paths:
            desc = declared.get(" ".join(path))
            if desc is not None:
                assert command.descriptor is desc, " ".join(path)


@pytest.mark.parametrize("argv, sent", [
    ("health", {"prefix": "health"}),
    ("health detail", {"prefix": "health", "detail": True}),
    ("pool ls detail", {"prefix": "osd pool ls", "detail": True}),
    ("pool create p 16 --size 3 --crush-rule r",
     {"prefix": "osd pool create", "pool": "p", "pg_num": 16, "size": 3, "crush_rule": "r"}),
    # the confirmation counts only with the name repeated
    ("pool rm p --yes-i-really-really-mean-it", {"prefix": "osd pool rm", "pool": "p"}),
    ("osd pool delete p p --yes-i-really-really-mean-it",
     {"prefix": "osd pool rm", "pool": "p", "pool2": "p", "confirm": True}),
    ("pool set p size 3", {"prefix": "osd pool set", "pool": "p", "var": "size", "val": "3"}),
    ("auth get-or-create client.x", {"prefix": "auth get-or-create", "entity": "client.x",
                                     "caps": {}}),
    ("auth export", {"prefix": "auth export"}),
    ("osd reweight osd.1 0.5", {"prefix": "osd reweight", "ids": [1], "weight": 0.5}),
    ("osd purge 2 --yes-i-really-mean-it", {"prefix": "osd purge", "ids": [2], "confirm": True}),
    ("pg dump_stuck inactive stale --threshold 0",  # 0 is sent, not taken for "absent"
     {"prefix": "pg dump_stuck", "states": ["inactive", "stale"], "threshold": 0.0}),
    ("fs status f", {"prefix": "fs status", "fs_name": "f"}),
    ("fs rm f --yes-i-really-mean-it",
     {"prefix": "fs rm", "fs_name": "f", "yes_i_really_mean_it": True}),
])
def test_a_cli_spelling_becomes_the_monitor_command(argv, sent):
    assert run(argv.split())[1] == [sent]  # (the canned empty reply may not render)


def test_caps_come_as_service_cap_pairs():
    code, sent, out, _ = run(["auth", "caps", "client.x", "mon", "allow r", "osd", "allow rw"])
    assert code == 0 and out == "updated caps for client.x\n"
    assert sent[0]["caps"] == {"mon": "allow r", "osd": "allow rw"}


@pytest.mark.parametrize("argv, words", [
    ("auth add client.x mon", "caps come in pairs"),
    ("osd reweight x 0.5", "not an OSD id"),
    ("osd reweight 1 heavy", "invalid float"),
    ("health nope", "invalid choice"),
    ("fs quota set / --max-bytes 12Q", "invalid size"),
    ("pool create", "required"),
])
def test_garbage_fails_in_the_cli_and_sends_nothing(argv, words):
    code, sent, out, err = run(argv.split())
    assert (code, sent, out) == (errno.EINVAL, [], "")
    assert words in err


def test_fs_new_shows_what_it_made_and_not_the_osdmap_epoch():
    reply = {"fs_name": "f", "created": True, "osdmap_epoch": 7}
    code, sent, out, _ = run(["fs", "new", "f", "meta", "data"], reply)
    assert (code, out) == (0, "new fs 'f' with metadata pool meta and data pool data\n")
    assert sent == [{"prefix": "fs new", "fs_name": "f", "metadata": "meta", "data": "data"}]
    code, _, out, _ = run(["fs", "new", "f", "meta", "data", "--format", "json"], reply)
    assert json.loads(out) == {"fs_name": "f", "created": True}


def test_a_parameter_named_like_a_global_flag_does_not_take_its_place():
    """A snapshot's `name` is not the entity to authenticate as (`--name`)."""
    args = build_parser().parse_args(["fs", "snapshot", "create", "/p", "s1", "--fs", "f"])
    assert (args.name, args.fs, args.name_) == ("client.admin", "f", "s1")
    args = build_parser().parse_args(["fs", "snapshot", "rm", "/p", "s1", "-n", "client.x"])
    assert (args.name, args.name_) == ("client.x", "s1")
