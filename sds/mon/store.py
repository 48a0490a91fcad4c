"""Durable key/value store of a monitor, on LMDB.

Holds the Paxos state (keys under "paxos/", see sds.mon.paxos) and any other monitor data.
Every `write` is one synchronous LMDB transaction, so a Ready's persist set becomes durable
atomically before the driver sends the Ready's messages.

Every value is sealed with a CRC32C over key and value (sds.common.seal) and verified when
read: a flipped byte is CorruptMetadata naming the file and key, never Paxos state. A store
of the format before checksums, or one LMDB cannot open, refuses to open with what to do.
"""

from __future__ import annotations

from pathlib import Path

import lmdb

from sds.common.errors import ChecksumError, CorruptMetadata, NotSupported
from sds.common.seal import seal, unseal

MAP_SIZE = 1 << 30  # 1 GiB address space reserved; the file grows as needed
FORMAT_KEY = b"\x00format"  # not a str key any caller can write: they are UTF-8 text
FORMAT = b"2"  # 1: plain values; 2: sealed values
REBUILD_HINT = ("rebuild this monitor from the others: stop it, move its store directory "
                "away and start it again, and it catches up from the quorum")


class MonStore:
    """LMDB environment in directory `path`; keys are str (UTF-8), values bytes."""

    def __init__(self, path: str | Path, map_size: int = MAP_SIZE):
        Path(path).mkdir(parents=True, exist_ok=True)
        self.file = Path(path) / "data.mdb"
        try:
            self._env = lmdb.open(str(path), map_size=map_size, subdir=True, sync=True,
                                  metasync=True, max_dbs=0)
            self._check_format()
        except lmdb.Error as e:
            raise CorruptMetadata(f"{self.file}: {type(e).__name__}: {e}: {REBUILD_HINT}") from e

    def _check_format(self) -> None:
        with self._env.begin(write=True) as txn:
            raw = txn.get(FORMAT_KEY)
            if raw is None and txn.stat()["entries"] == 0:
                txn.put(FORMAT_KEY, seal(FORMAT_KEY, FORMAT))
                return
        found = self._open(FORMAT_KEY, raw) if raw is not None else b"1"
        if found != FORMAT:
            raise NotSupported(f"{self.file}: monitor store format {found.decode()}, this "
                               f"monitor reads format {FORMAT.decode()}: {REBUILD_HINT}")

    def _open(self, key: bytes, raw) -> bytes:
        """The verified value stored under `key`."""
        try:
            return unseal(key, raw, f"{self.file}: key {key[:100]!r}")[1]
        except ChecksumError as e:
            raise CorruptMetadata(f"{e}: {REBUILD_HINT}") from e

    def load(self) -> dict[str, bytes]:
        """Everything stored: what MonitorCore takes as `durable` at boot."""
        with self._env.begin() as txn:
            return {bytes(k).decode(): self._open(bytes(k), v)
                    for k, v in txn.cursor() if k != FORMAT_KEY}

    def write(self, persist: dict[str, bytes | None]) -> None:
        """Apply puts (bytes) and deletes (None) in one durable transaction."""
        if not persist:
            return
        with self._env.begin(write=True) as txn:
            for key, value in persist.items():
                k = key.encode()
                if value is None:
                    txn.delete(k)
                else:
                    txn.put(k, seal(k, value))

    def get(self, key: str) -> bytes | None:
        k = key.encode()
        with self._env.begin() as txn:
            value = txn.get(k)
        return None if value is None else self._open(k, value)

    def put(self, key: str, value: bytes) -> None:
        self.write({key: value})

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> MonStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
