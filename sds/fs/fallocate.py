"""FALLOCATE for the mount, which pyfuse3 (3.5) has no handler for.

Without one libfuse answers ENOSYS and the kernel then fails every fallocate(2) on the
mount with EOPNOTSUPP. `install()` puts a C callback into the fallocate slot of the
operations table libfuse copied into its session when `pyfuse3.init()` created it. The
table is found, not assumed: pyfuse3's own copy (a static symbol, read from the ELF
symbol table of its extension module) must match a window of the session byte for
byte, once, with an empty fallocate slot; otherwise nothing is changed and fallocate
stays unsupported. The callback answers from an asyncio task, as pyfuse3's handlers do.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import os
import struct
from collections.abc import Awaitable, Callable

log = logging.getLogger("sds.fuse.fallocate")

FALLOCATE_SLOT = 40   # index of fallocate in struct fuse_lowlevel_ops (libfuse 3 only appends)
FH_OFFSET = 16        # offsetof(struct fuse_file_info, fh)
SCAN_BYTES = 256      # the table sits this near the start of struct fuse_session
OPS_SYMBOL = b"__pyx_v_7pyfuse3_fuse_ops"
SESSION_SYMBOL = b"__pyx_v_7pyfuse3_session"
SHT_SYMTAB = 2

Handler = Callable[[int, int, int, int, int | None], Awaitable[None]]
_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                             ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_installed: list = []  # the callback must outlive the session


def elf_symbols(path: str, names: set[bytes]) -> dict[bytes, int]:
    """Values (load-relative addresses) of the named symbols in an ELF64 file's .symtab."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:5] != b"\x7fELF\x02":
        return {}
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    found: dict[bytes, int] = {}
    for sec in sections:
        if sec[1] != SHT_SYMTAB:
            continue
        strtab = sections[sec[6]]
        for at in range(sec[4], sec[4] + sec[5], 24):
            name_off, _info, _other, _shndx, value, _size = struct.unpack_from("<IBBHQQ", data, at)
            start = strtab[4] + name_off
            name = data[start:data.index(b"\0", start)]
            if name in names:
                found[name] = value
    return found


def load_base(path: str) -> int | None:
    """Where the shared object is mapped in this process (its offset-0 mapping)."""
    path = os.path.realpath(path)
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == path and int(fields[2], 16) == 0:
                return int(fields[0].split("-")[0], 16)
    return None


def _slot_address(so_path: str) -> int:
    """The address of the fallocate slot in libfuse's session table, or ValueError."""
    syms = elf_symbols(so_path, {OPS_SYMBOL, SESSION_SYMBOL})
    base = load_base(so_path)
    if base is None or len(syms) != 2:
        raise ValueError("pyfuse3's symbols are not where expected")
    table = ctypes.string_at(base + syms[OPS_SYMBOL], (FALLOCATE_SLOT + 1) * 8)
    if table[-8:] != bytes(8):
        raise ValueError("pyfuse3 already fills the fallocate slot")
    session = ctypes.c_void_p.from_address(base + syms[SESSION_SYMBOL]).value
    if not session:
        raise ValueError("no FUSE session yet (call after pyfuse3.init)")
    window = ctypes.string_at(session, SCAN_BYTES + len(table))
    at = window.find(table)
    if at < 0 or at % 8 or window.find(table, at + 1) >= 0:
        raise ValueError("the session's operations table was not found exactly once")
    return session + at + FALLOCATE_SLOT * 8


def install(handler: Handler) -> bool:
    """Serve FALLOCATE with `handler(fuse_ino, mode, offset, length, fh)` (raises
    pyfuse3.FUSEError for an errno); False, logged, if it cannot be installed."""
    import pyfuse3

    try:
        lib = ctypes.CDLL(ctypes.util.find_library("fuse3") or "libfuse3.so.3")
        reply_err = lib.fuse_reply_err
        reply_err.argtypes, reply_err.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int
        slot = _slot_address(pyfuse3.__file__)
    except (OSError, ValueError, AttributeError) as e:
        log.warning("fallocate stays unsupported (EOPNOTSUPP): %s", e)
        return False
    tasks: set[asyncio.Task] = set()

    async def serve(req: int, ino: int, mode: int, offset: int, length: int,
                    fh: int | None) -> None:
        code = errno.EIO
        try:
            await handler(ino, mode, offset, length, fh)
            code = 0
        except pyfuse3.FUSEError as e:
            code = e.errno
        except Exception:  # noqa: BLE001 - every request gets an answer
            log.exception("fallocate(%d, %#x, %d, %d) failed", ino, mode, offset, length)
        finally:
            reply_err(req, code)  # also when cancelled at unmount: EIO

    def on_fallocate(req, ino, mode, offset, length, fi) -> None:
        try:
            fh = ctypes.c_uint64.from_address(fi + FH_OFFSET).value if fi else None
            task = asyncio.get_running_loop().create_task(
                serve(req, ino, mode, offset, length, fh))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        except Exception:  # noqa: BLE001 - a C callback must not raise
            log.exception("fallocate request not dispatched")
            reply_err(req, errno.EIO)

    callback = _CALLBACK(on_fallocate)
    _installed.append((callback, tasks))
    ctypes.c_void_p.from_address(slot).value = ctypes.cast(callback, ctypes.c_void_p).value
    log.info("fallocate handler installed")
    return True
