"""Protobuf encoding of paxos.Message (proto/paxos.proto `PaxosMsg`).

The core's Message stays a plain dataclass so the state machine never depends on the wire
format; this module is the one place that maps between the two.
"""

from __future__ import annotations

from dataclasses import fields

from sds.mon.paxos import Message
from sds.proto import paxos_pb2

_SCALARS = [f.name for f in fields(Message) if f.name not in ("values", "quorum")]


def encode(msg: Message) -> bytes:
    pb = paxos_pb2.PaxosMsg(**{name: getattr(msg, name) for name in _SCALARS})
    pb.values.update(msg.values)
    pb.quorum.extend(msg.quorum)
    return pb.SerializeToString()


def decode(data: bytes) -> Message:
    pb = paxos_pb2.PaxosMsg.FromString(data)
    msg = Message(**{name: getattr(pb, name) for name in _SCALARS})
    msg.values = dict(pb.values)
    msg.quorum = list(pb.quorum)
    return msg
