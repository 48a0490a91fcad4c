"""Pool commands: `osd pool ls/create/rm/get/set`."""

from __future__ import annotations

import errno

from sds.common import osdmap as om
from sds.common.command import Cli, Param, as_int, opt
from sds.common.errors import InvalidArgument, NotSupported, PermissionDenied
from sds.health.checks import size_warnings
from sds.mon.services.core import (
    MAX_PG_NUM,
    MAX_POOL_SIZE,
    POOL_NAME_RE,
    POOL_VARS,
    CommandResult,
    MonView,
    _pool_dict,
    _rule,
    _update,
    command,
    default_min_size,
)
from sds.proto import maps_pb2

NAME = Param("pool", cli=Cli(metavar="NAME"))


def _or(value, default):
    return default if value is None else value


@command("osd pool ls", opt("detail", "bool", False, cli=Cli(word="detail")),
         cli_paths=("pool ls", "osd pool ls"))
def cmd_pool_ls(view: MonView, args: dict) -> CommandResult:
    """Pool names; with detail, every pool's settings."""
    if args["detail"]:
        return CommandResult({"pools": [_pool_dict(p, view.osdmap.crush)
                                        for p in view.osdmap.pools]})
    return CommandResult({"pools": [p.name for p in view.osdmap.pools]})


@command("osd pool create", NAME,
         opt("pg_num", "int", lo=1, hi=MAX_PG_NUM, cli=Cli(positional=True, metavar="PG_NUM")),
         opt("size", "int", lo=1, hi=MAX_POOL_SIZE,
             help="replicas (default osd_pool_default_size)"),
         opt("min_size", "int", lo=1, hi=MAX_POOL_SIZE, help="replicas needed to accept writes"),
         opt("crush_rule", "any", 0, help="rule name or id",
             cli=Cli(help="CRUSH rule name (default replicated_rule)")),
         opt("application", "text", "", help="application tag, e.g. rbd, cephfs, rgw"),
         write=True, cli_paths=("pool create", "osd pool create"))
def cmd_pool_create(view: MonView, args: dict) -> CommandResult:
    """Create a replicated pool; an existing pool of that name is left as it is."""
    osdmap, config = view.osdmap, view.config
    name = args["pool"]
    if not POOL_NAME_RE.match(name):
        raise InvalidArgument(f"invalid pool name '{name}': use letters, digits, '_', '-', '.' "
                              "(at most 128, not starting with '.' or '-')")
    pg_num = _or(args["pg_num"], int(config.get("osd_pool_default_pg_num")))
    size = _or(args["size"], int(config.get("osd_pool_default_size")))
    min_size = as_int("min_size", _or(args["min_size"], default_min_size(config, size)), 1, size)
    rule = _rule(osdmap.crush, args["crush_rule"])
    application = args["application"]
    for existing in osdmap.pools:
        if existing.name == name:
            return CommandResult({"pool": name, "pool_id": existing.id, "created": False})
    inc = om.next_incremental(osdmap, view.now)
    pool = inc.new_pools.add(
        id=osdmap.pool_max + 1, name=name, size=size, min_size=min_size, pg_num=pg_num,
        crush_rule=rule.id, created_epoch=inc.epoch, application=application)
    inc.new_pool_max = pool.id
    return CommandResult(
        {"pool": name, "pool_id": pool.id, "created": True, "size": size,
         "min_size": min_size, "pg_num": pg_num, "crush_rule": rule.name,
         "warnings": size_warnings(osdmap, pool)},
        _update(inc))


@command("osd pool rm", NAME,
         opt("pool2", help="the name again, to confirm", cli=Cli(positional=True, metavar="NAME")),
         opt("confirm", "bool", False, help="confirm that all data of the pool is destroyed",
             cli=Cli(flag="--yes-i-really-really-mean-it", only_with="pool2")),
         write=True, cli_paths=("pool rm", "osd pool rm", "osd pool delete"))
def cmd_pool_rm(view: MonView, args: dict) -> CommandResult:
    """Delete a pool and all its objects; needs the name twice and "confirm": true
    (`sds pool rm NAME NAME --yes-i-really-really-mean-it`)."""
    name = args["pool"]
    again = args["pool2"]
    if again is not None and again != name:
        raise InvalidArgument(f"the pool name was not repeated correctly: '{name}' vs '{again}'")
    if not args["confirm"]:
        raise PermissionDenied(
            f"deleting pool '{name}' destroys all its data for good; repeat the name and pass "
            f"--yes-i-really-really-mean-it: sds pool rm {name} {name} --yes-i-really-really-mean-it",
            code=errno.EPERM)
    found = [p for p in view.osdmap.pools if p.name == name]
    if not found:
        return CommandResult({"pool": name, "removed": False})
    inc = om.next_incremental(view.osdmap, view.now)
    inc.removed_pools.append(found[0].id)
    return CommandResult({"pool": name, "pool_id": found[0].id, "removed": True}, _update(inc))


@command("osd pool get", NAME,
         Param("var", help=", ".join(POOL_VARS) + " or all", cli=Cli(metavar="VAR")),
         cli_paths=("pool get", "osd pool get"))
def cmd_pool_get(view: MonView, args: dict) -> CommandResult:
    """One setting of a pool (size, min_size, pg_num, crush_rule, application) or all."""
    pool = om.pool_by_name(view.osdmap, args["pool"])
    var = args["var"]
    values = _pool_dict(pool, view.osdmap.crush)
    if var == "all":
        return CommandResult({"pool": pool.name, "pool_id": pool.id,
                              **{k: values[k] for k in POOL_VARS}})
    if var not in POOL_VARS:
        raise InvalidArgument(f"unknown pool setting '{var}' (known: {', '.join(POOL_VARS)}, all)")
    return CommandResult({"pool": pool.name, var: values[var]})


@command("osd pool set", NAME, Param("var", help=", ".join(POOL_VARS), cli=Cli(metavar="VAR")),
         Param("val", "any", cli=Cli(metavar="VAL")), write=True,
         cli_paths=("pool set", "osd pool set"))
def cmd_pool_set(view: MonView, args: dict) -> CommandResult:
    """Change one setting of a pool: size, min_size, pg_num, crush_rule or application."""
    osdmap = view.osdmap
    current = om.pool_by_name(osdmap, args["pool"])
    var, val = args["var"], args["val"]
    pool = maps_pb2.Pool()
    pool.CopyFrom(current)
    if var == "size":
        pool.size = as_int("size", val, 1, MAX_POOL_SIZE)
        if pool.size != current.size:  # as Ceph: min_size follows size
            pool.min_size = default_min_size(view.config, pool.size)
    elif var == "min_size":
        pool.min_size = as_int("min_size", val, 1, pool.size)
    elif var == "pg_num":
        pg_num = as_int("pg_num", val, 1, MAX_PG_NUM)
        if pg_num != current.pg_num:
            raise NotSupported(
                f"changing pg_num of pool '{pool.name}' ({current.pg_num} -> {pg_num}) needs PG "
                "split/merge, which SDS does not do yet; create a new pool with that pg_num")
    elif var == "crush_rule":
        pool.crush_rule = _rule(osdmap.crush, val).id
    elif var == "application":
        if not isinstance(val, str):
            raise InvalidArgument(f"'application' must be a string, not {val!r}")
        pool.application = val
    else:
        raise InvalidArgument(f"unknown pool setting '{var}' (settable: {', '.join(POOL_VARS)})")
    output = {"pool": pool.name, "var": var, **{k: _pool_dict(pool, osdmap.crush)[k]
                                                for k in POOL_VARS}}
    if pool == current:
        return CommandResult({**output, "changed": False})
    inc = om.next_incremental(osdmap, view.now)
    inc.new_pools.append(pool)
    output.update(changed=True, warnings=size_warnings(osdmap, pool))
    return CommandResult(output, _update(inc))


