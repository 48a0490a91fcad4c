"""Human renderings of command results; `--format json` prints the data itself.

Every renderer takes the JSON-able dict a command returned and gives text, so
the plain and JSON outputs always carry the same facts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

FORMATS = ("plain", "json")


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def human_bytes(n: float) -> str:
    """1536 -> "1.5 KiB"; whole bytes stay exact."""
    n = float(n)
    if abs(n) < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if abs(n) < 100 else f"{n:.0f} {unit}"
    raise AssertionError("unreachable")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], left: Sequence[str] = ()) -> str:
    """Columns padded to their widest cell; numbers right-aligned unless named in `left`."""
    rows = [["" if c is None else c for c in row] for row in rows]
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    right = [headers[i] not in left
             and all(_is_number(r[i]) or r[i] == "" for r in rows if i < len(r))
             for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(widths[i]) if right[i] else v.ljust(widths[i])
                 for i, v in enumerate(values)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers)] + [line(row) for row in cells])


def _pct(value: float) -> str:
    return f"{value:.2f}"


# ---------------------------------------------------------------- health and status

_SEVERITY_TAG = {"HEALTH_WARN": "WRN", "HEALTH_ERR": "ERR"}


def health(data: dict, detail: bool = False) -> str:
    checks = data.get("checks", {})
    summaries = [c["summary"]["message"] for c in checks.values()]
    first = data["status"] + (" " + "; ".join(summaries) if summaries else "")
    if not detail:
        return first
    lines = [first]
    for code, check in checks.items():
        tag = _SEVERITY_TAG.get(check["severity"], check["severity"])
        lines.append(f"[{tag}] {code}: {check['summary']['message']}")
        lines.extend(f"    {d['message']}" for d in check.get("detail", []))
        if check.get("hint"):
            lines.append(f"    what to do: {check['hint']}")
    return "\n".join(lines)


def status(data: dict) -> str:
    mon, osd, pg = data["monmap"], data["osdmap"], data["pgmap"]
    lines = ["  cluster:", f"    id:     {data['fsid']}", f"    health: {data['health']['status']}"]
    lines += [f"            {c['summary']['message']}" for c in data["health"]["checks"].values()]
    quorum = ",".join(mon["quorum_names"])
    lines += ["", "  services:",
              f"    mon: {mon['num_mons']} daemons, quorum {quorum} (leader {mon['leader']}), "
              f"election epoch {mon['election_epoch']}",
              f"    osd: {osd['num_osds']} osds: {osd['num_up_osds']} up, {osd['num_in_osds']} in"
              f" (epoch {osd['epoch']})"]
    if osd.get("flags"):
        lines.append(f"         flags {','.join(osd['flags'])}")
    fsmap = data.get("fsmap") or {}
    if fsmap.get("filesystems") or fsmap.get("standby"):
        parts = [f"{f['name']}:1 {{0={f['active']}=up:active}}" if f["active"]
                 else f"{f['name']}:0 (no active MDS)" for f in fsmap.get("filesystems", [])]
        parts.append(f"{len(fsmap.get('standby', []))} up:standby")
        lines.append(f"    mds: {', '.join(parts)}")
    pgs = ", ".join(f"{s['count']} {s['state_name']}" for s in pg["pgs_by_state"]) or "none"
    total = pg["bytes_total"]
    lines += ["", "  data:",
              f"    pools:   {pg['num_pools']} pools, {pg['num_pgs']} pgs",
              f"    objects: {pg['num_objects']} objects, {human_bytes(pg['data_bytes'])}",
              f"    usage:   {human_bytes(pg['bytes_used'])} used, "
              f"{human_bytes(pg['bytes_avail'])} / {human_bytes(total)} avail",
              f"    pgs:     {pgs}"]
    io = (pg["read_bytes_sec"], pg["write_bytes_sec"], pg["read_op_per_sec"], pg["write_op_per_sec"])
    if any(io):
        lines += ["", "  io:",
                  f"    client: {human_bytes(io[0])}/s rd, {human_bytes(io[1])}/s wr, "
                  f"{io[2]:.0f} op/s rd, {io[3]:.0f} op/s wr"]
    rec = data.get("recovery")
    if rec:
        eta = rec.get("eta_seconds")
        lines += ["", "  progress:",
                  f"    recovery: {rec['objects_left']} of {rec['objects_total']} objects left, "
                  f"{rec['objects_per_sec']:.1f} objects/s, "
                  + (f"ETA {eta:.0f}s" if eta is not None else "ETA unknown")]
    if data.get("notes"):
        lines += ["", "  notes:"] + [f"    {note}" for note in data["notes"]]
    return "\n".join(lines)


def mon_stat(data: dict) -> str:
    mons = ",".join(f"{m['name']}={m['addr']}" for m in data["mons"])
    quorum = ",".join(str(r) for r in data["quorum"])
    leader = "none" if data["leader"] is None else f"{data['leader_rank']} {data['leader']}"
    return (f"e{data['epoch']}: {data['num_mons']} mons at {{{mons}}}, election epoch "
            f"{data['election_epoch']}, leader {leader}, quorum {quorum} "
            f"{','.join(data['quorum_names'])}")


# ---------------------------------------------------------------- OSDs

def osd_tree(data: dict) -> str:
    rows = []
    for n in data["nodes"]:
        name = "    " * n["depth"] + n["name"]
        rows.append([n["id"], f"{n['crush_weight']:.5f}", n["type"], name,
                     n.get("status", ""), f"{n['reweight']:.5f}" if "reweight" in n else ""])
    for s in data.get("stray", []):
        rows.append([s["id"], "0", "osd", s["name"] + " (not in CRUSH)", s["status"], ""])
    return table(["ID", "WEIGHT", "TYPE", "NAME", "STATUS", "REWEIGHT"], rows,
                 left=["TYPE", "NAME", "STATUS"])


def osd_ls(data: dict) -> str:
    return "\n".join(str(i) for i in data["osds"])


def osd_dump(data: dict) -> str:
    lines = [f"epoch {data['epoch']}", f"fsid {data['fsid']}",
             f"modified {_time(data['modified'])}",
             f"flags {','.join(data['flags'])}", f"pool_max {data['pool_max']}", ""]
    lines += [pool_line(p) for p in data["pools"]]
    lines += [""] + [
        f"osd.{o['osd']} {'up' if o['up'] else 'down'} {'in' if o['in'] else 'out'} "
        f"weight {o['reweight']:g} up_from {o['up_from']} down_at {o['down_at']} "
        f"host {o['host']} {o['addr']} {o['uuid']}" for o in data["osds"]]
    lines += [""] + [f"rule {r['rule_id']} '{r['rule_name']}' failure domain "
                     f"{r['failure_domain']}" for r in data.get("crush_rules", [])]
    return "\n".join(lines)


def pool_line(p: dict) -> str:
    app = f" application {p['application']}" if p.get("application") else ""
    return (f"pool {p['pool']} '{p['pool_name']}' replicated size {p['size']} min_size "
            f"{p['min_size']} crush_rule {p['crush_rule_id']} ({p['crush_rule']}) pg_num "
            f"{p['pg_num']}{app} created epoch {p['created_epoch']}")


def osd_df(data: dict) -> str:
    rows = [[n["id"], n["host"], f"{n['crush_weight']:.5f}", f"{n['reweight']:.5f}",
             human_bytes(n["total_bytes"]), human_bytes(n["used_bytes"]),
             human_bytes(n["avail_bytes"]), _pct(n["utilization"]), n["objects"], n["pgs"],
             n["status"]] for n in data["nodes"]]
    s = data["summary"]
    rows.append(["", "TOTAL", "", "", human_bytes(s["total_bytes"]), human_bytes(s["used_bytes"]),
                 human_bytes(s["avail_bytes"]), _pct(s["average_utilization"]), "", "", ""])
    text = table(["ID", "HOST", "WEIGHT", "REWEIGHT", "SIZE", "USE", "AVAIL", "%USE", "OBJECTS",
                  "PGS", "STATUS"], rows, left=["HOST", "STATUS"])
    if not s.get("stats_available", True):
        text += "\n(no statistics from the mgr yet: usage shows as 0)"
    return text


def osd_map(data: dict) -> str:
    return (f"osdmap e{data['epoch']} pool '{data['pool']}' ({data['pool_id']}) object "
            f"'{data['objname']}' -> pg {data['pgid']} -> up ({data['up']}, "
            f"p{data['up_primary']}) acting ({data['acting']}, p{data['acting_primary']})")


def osd_mark(data: dict) -> str:
    what = data["marked"]
    parts = []
    if data["osds"]:
        parts.append(f"marked {what} " + ", ".join(f"osd.{i}" for i in data["osds"]))
    if data["unchanged"]:
        parts.append(", ".join(f"osd.{i}" for i in data["unchanged"]) + f" already {what}")
    return "; ".join(parts)


def df(data: dict) -> str:
    s = data["stats"]
    raw = table(["SIZE", "AVAIL", "USED", "%USED", "OBJECTS"],
                [[human_bytes(s["total_bytes"]), human_bytes(s["total_avail_bytes"]),
                  human_bytes(s["total_used_bytes"]), _pct(s["used_percent"]),
                  s["total_objects"]]])
    pools = table(["POOL", "ID", "STORED", "OBJECTS", "USED", "%USED", "MAX AVAIL"],
                  [[p["name"], p["id"], human_bytes(p["stats"]["stored"]), p["stats"]["objects"],
                    human_bytes(p["stats"]["bytes_used"]), _pct(p["stats"]["percent_used"]),
                    human_bytes(p["stats"]["max_avail"])] for p in data["pools"]],
                  left=["POOL"])
    text = f"--- RAW STORAGE ---\n{raw}\n\n--- POOLS ---\n{pools}"
    if not s.get("stats_available", True):
        text += "\n(no statistics from the mgr yet: usage shows as 0)"
    return text


# ---------------------------------------------------------------- pools

def pool_create(data: dict) -> str:
    if not data["created"]:
        return f"pool '{data['pool']}' already exists"
    text = (f"pool '{data['pool']}' created (id {data['pool_id']}, size {data['size']}, "
            f"min_size {data['min_size']}, pg_num {data['pg_num']})")
    return "\n".join([text] + [f"warning: {w}" for w in data.get("warnings", [])])


def pool_ls(data: dict) -> str:
    return "\n".join(p if isinstance(p, str) else pool_line(p) for p in data["pools"])


def pool_rm(data: dict) -> str:
    if data["removed"]:
        return f"pool '{data['pool']}' removed"
    return f"pool '{data['pool']}' does not exist"


def pool_get(data: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in data.items() if k not in ("pool", "pool_id"))


def pool_set(data: dict) -> str:
    var = data["var"]
    if not data["changed"]:
        return f"pool '{data['pool']}' {var} is already {data[var]}"
    text = f"set pool '{data['pool']}' {var} to {data[var]}"
    if var == "size":
        text += f" (min_size {data['min_size']})"
    return "\n".join([text] + [f"warning: {w}" for w in data.get("warnings", [])])


# ---------------------------------------------------------------- auth, objects, cluster

def auth_ls(data: dict) -> str:
    lines = []
    for e in data["auth"]:
        lines.append(e["entity"])
        lines.extend(f"\tcaps: [{svc}] {cap}" for svc, cap in sorted(e["caps"].items()))
    return "\n".join(lines)


def auth_get(data: dict) -> str:
    lines = [f"[{data['entity']}]", f"\tkey = {data['key']}"]
    lines += [f'\tcaps {svc} = "{cap}"' for svc, cap in sorted(data["caps"].items())]
    return "\n".join(lines)


def _time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts)) if ts else "-"


def object_stat(data: dict) -> str:
    return (f"{data['pool']}/{data['object']} mtime {_time(data['mtime'])}, size {data['size']}, "
            f"version {data['version']}")


def cluster_status(daemons: list[dict]) -> str:
    if not daemons:
        return "no daemons (run `sds cluster up`)"
    return table(["NAME", "ADDR", "PID", "RUNNING", "DATA_DIR"],
                 [[d["name"], d.get("addr") or "-", d.get("pid") or "-",
                   "yes" if d.get("running") else "no", d.get("data_dir", "")] for d in daemons],
                 left=["NAME", "ADDR", "PID", "RUNNING"])


def pg_table(pgs: list[dict]) -> str:
    rows = [(pg["pgid"], pg.get("state") or "unknown", pg.get("objects") or 0,
             human_bytes(pg.get("bytes") or 0), str(pg.get("acting") or []),
             pg.get("primary") if pg.get("primary") is not None else "-",
             _time(pg["last_deep_scrub"]) if pg.get("last_deep_scrub") else "never")
            for pg in pgs]
    return table(("PG", "STATE", "OBJECTS", "BYTES", "ACTING", "PRIMARY", "DEEP SCRUB"), rows,
                 left=("PG", "STATE", "ACTING"))
