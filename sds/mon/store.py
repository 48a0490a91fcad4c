"""Durable key/value store of a monitor, on LMDB.

Holds the Paxos state (keys under "paxos/", see sds.mon.paxos) and any other monitor data.
Every `write` is one synchronous LMDB transaction, so a Ready's persist set becomes durable
atomically before the driver sends the Ready's messages.
"""

from __future__ import annotations

from pathlib import Path

import lmdb

MAP_SIZE = 1 << 30  # 1 GiB address space reserved; the file grows as needed


class MonStore:
    """LMDB environment in directory `path`; keys are str (UTF-8), values bytes."""

    def __init__(self, path: str | Path, map_size: int = MAP_SIZE):
        Path(path).mkdir(parents=True, exist_ok=True)
        self._env = lmdb.open(str(path), map_size=map_size, subdir=True, sync=True,
                              metasync=True, max_dbs=0)

    def load(self) -> dict[str, bytes]:
        """Everything stored: what MonitorCore takes as `durable` at boot."""
        with self._env.begin() as txn:
            return {bytes(k).decode(): bytes(v) for k, v in txn.cursor()}

    def write(self, persist: dict[str, bytes | None]) -> None:
        """Apply puts (bytes) and deletes (None) in one durable transaction."""
        if not persist:
            return
        with self._env.begin(write=True) as txn:
            for key, value in persist.items():
                if value is None:
                    txn.delete(key.encode())
                else:
                    txn.put(key.encode(), value)

    def get(self, key: str) -> bytes | None:
        with self._env.begin() as txn:
            value = txn.get(key.encode())
        return None if value is None else bytes(value)

    def put(self, key: str, value: bytes) -> None:
        self.write({key: value})

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> MonStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
