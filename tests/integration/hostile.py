"""Hostile peers for the messenger tests: raw sockets that speak just enough of the wire.

Shared by the integration test and by the before/after measurements in the report.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

from sds.proto import messenger_pb2 as mpb

HEADER = struct.Struct("!II")
HUGE_NAME = "client." + "N" * (8 << 20)   # an 8 MiB entity name


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _connect(addr: str) -> socket.socket:
    host, _, port = addr.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=5)


def send_and_hold(addr: str, blobs: list[bytes], hold_s: float = 0.5) -> None:
    """Open one connection per blob, send it, keep them all open `hold_s`, then close."""
    socks = []
    try:
        for blob in blobs:
            s = _connect(addr)
            socks.append(s)
            try:
                s.sendall(blob)
            except OSError:
                pass  # the daemon refused it already: that is the point
        time.sleep(hold_s)
    finally:
        for s in socks:
            s.close()


def giant_data_header() -> bytes:
    """8 bytes announcing an empty envelope and 1 GiB of data."""
    return HEADER.pack(0, 1 << 30)


def giant_envelope_header() -> bytes:
    """8 bytes announcing a 64 MiB envelope, plus a little of it."""
    return HEADER.pack(64 << 20, 0) + b"\x08" * 4096


def huge_auth_request() -> bytes:
    """A complete frame: an AuthRequest whose entity name is 8 MiB."""
    req = mpb.AuthRequest(entity=HUGE_NAME, client_nonce=b"n" * 16, proof=b"p" * 32)
    env = mpb.Envelope(type=mpb.AUTH_REQUEST, payload=req.SerializeToString()).SerializeToString()
    return HEADER.pack(len(env), 0) + env
