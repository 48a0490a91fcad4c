"""Wire and store encodings of the peering core's values (sds/osd/peering.py).

The core speaks plain dataclasses; OSDs exchange them as protobuf (proto/osd.proto), and
objects in the store carry their (epoch, v) version packed into one integer.
"""

from __future__ import annotations

from sds.osd.peering import Entry, Message, Need, Version
from sds.proto import osd_pb2

EPOCH_SHIFT = 32


def pack(version: Version) -> int:
    """An (epoch, v) version as the store's integer object version (ordering kept)."""
    return (version[0] << EPOCH_SHIFT) | version[1]


def unpack(value: int) -> Version:
    return (value >> EPOCH_SHIFT, value & ((1 << EPOCH_SHIFT) - 1))


def reqid(client: str, tid: int, digest: int | None = None) -> str:
    """A client request id as PG log entries keep it: "<instance>:<tid>", and with the
    op's digest "<instance>:<tid>#<digest hex>" (so a different op under it is told apart)."""
    if not client or not tid:
        return ""
    return f"{client}:{tid}" if digest is None else f"{client}:{tid}#{digest:08x}"


def split_reqid(logged: str) -> tuple[str, int | None]:
    """("<instance>:<tid>", digest or None) of a logged request id."""
    base, sep, digest = logged.rpartition("#")
    if not sep:
        return logged, None
    try:
        return base, int(digest, 16)
    except ValueError:
        return logged, None


def entry_to_pb(entry: Entry, out: osd_pb2.PgLogEntry | None = None) -> osd_pb2.PgLogEntry:
    pb = out if out is not None else osd_pb2.PgLogEntry()
    pb.epoch, pb.v = entry.version
    pb.oid, pb.reqid, pb.delete = entry.oid, entry.reqid, entry.delete
    if entry.prior is not None:
        pb.has_prior = True
        pb.prior_epoch, pb.prior_v = entry.prior
    return pb


def entry_from_pb(pb: osd_pb2.PgLogEntry) -> Entry:
    prior = (pb.prior_epoch, pb.prior_v) if pb.has_prior else None
    return Entry((pb.epoch, pb.v), pb.oid, pb.reqid, pb.delete, prior)


def need_to_pb(oid: str, need: Need, out: osd_pb2.PgNeed | None = None) -> osd_pb2.PgNeed:
    pb = out if out is not None else osd_pb2.PgNeed()
    pb.oid, (pb.epoch, pb.v), pb.delete = oid, need.version, need.delete
    return pb


def need_from_pb(pb: osd_pb2.PgNeed) -> Need:
    return Need((pb.epoch, pb.v), pb.delete)


def message_to_pb(msg: Message, pool: int, ps: int) -> osd_pb2.PeeringMessage:
    pb = osd_pb2.PeeringMessage(pool=pool, pg=ps, kind=msg.kind, src=msg.src, dst=msg.dst,
                                epoch=msg.epoch, lec=msg.lec, oid=msg.oid)
    pb.last_update_epoch, pb.last_update_v = msg.last_update
    pb.log_tail_epoch, pb.log_tail_v = msg.log_tail
    for entry in msg.log:
        entry_to_pb(entry, pb.log.add())
    for oid, need in msg.missing.items():
        need_to_pb(oid, need, pb.missing.add())
    for oid, (epoch, v) in msg.objects.items():
        pb.objects.add(oid=oid, epoch=epoch, v=v)
    return pb


def message_from_pb(pb: osd_pb2.PeeringMessage) -> Message:
    return Message(
        kind=pb.kind, src=pb.src, dst=pb.dst, epoch=pb.epoch,
        last_update=(pb.last_update_epoch, pb.last_update_v),
        log_tail=(pb.log_tail_epoch, pb.log_tail_v), lec=pb.lec,
        log=[entry_from_pb(e) for e in pb.log],
        missing={n.oid: need_from_pb(n) for n in pb.missing},
        objects={o.oid: (o.epoch, o.v) for o in pb.objects}, oid=pb.oid)
