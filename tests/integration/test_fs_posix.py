"""POSIX behaviour through a real kernel FUSE mount, with ordinary calls and tools."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest
from fsmounts import FS_CLUSTER, mounted, requires_mds

from sds.client import Rados
from sds.client.mdsclient import MdsClient
from sds.proto import mds_pb2
from sds.proto.mds_pb2 import MdsRequest

pytestmark = [pytest.mark.integration, FS_CLUSTER, requires_mds]

GiB = 1 << 30
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mnt(cluster_module, tmp_path_factory):
    with mounted(cluster_module, tmp_path_factory.mktemp("posix") / "mnt") as m:
        yield m.path


@pytest.fixture
def d(mnt, request):
    """A fresh directory per test inside the mount."""
    path = mnt / request.node.name
    path.mkdir()
    return path


def errno_of(fn, *args) -> int:
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


def test_create_write_read_stat(d):
    p = d / "f"
    p.write_bytes(b"hello world")
    assert p.read_bytes() == b"hello world"
    st = p.stat()
    assert st.st_size == 11 and stat.S_ISREG(st.st_mode) and st.st_nlink == 1
    with open(p, "r+b") as f:
        f.seek(6)
        f.write(b"WORLD")
    assert p.read_bytes() == b"hello WORLD"


def test_open_flags_append_trunc_excl(d):
    p = d / "f"
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b"abc")
    os.close(fd)
    assert errno_of(os.open, p, os.O_CREAT | os.O_EXCL | os.O_WRONLY) == errno.EEXIST
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b"def")  # O_APPEND ignores the offset
    os.close(fd)
    assert p.read_bytes() == b"abcdef"
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    assert os.fstat(fd).st_size == 0
    os.write(fd, b"xy")
    os.close(fd)
    assert p.read_bytes() == b"xy"


def test_truncate_ftruncate_grow_and_shrink(d):
    p = d / "f"
    data = os.urandom(5 << 20)  # spans two 4 MiB objects
    p.write_bytes(data)
    os.truncate(p, 100)
    assert p.stat().st_size == 100 and p.read_bytes() == data[:100]
    os.truncate(p, 6 << 20)
    assert p.read_bytes() == data[:100] + bytes((6 << 20) - 100)
    with open(p, "r+b") as f:
        os.ftruncate(f.fileno(), 10)
        assert os.fstat(f.fileno()).st_size == 10
        f.seek(20)
        f.write(b"z")
    assert p.read_bytes() == data[:10] + bytes(10) + b"z"


def test_sparse_file_past_4gib(d):
    p = d / "sparse"
    with open(p, "wb") as f:
        f.seek(5 * GiB)
        f.write(b"end")
    assert p.stat().st_size == 5 * GiB + 3
    with open(p, "rb") as f:
        assert f.read(4096) == bytes(4096)
        f.seek(4 * GiB - 2)
        assert f.read(4) == bytes(4)
        f.seek(5 * GiB - 2)
        assert f.read(10) == b"\0\0end"
    p.unlink()


def test_unlink_while_open_keeps_data_until_close(d):
    p = d / "f"
    p.write_bytes(b"still here")
    fd = os.open(p, os.O_RDWR)
    try:
        p.unlink()
        assert not p.exists()
        assert os.pread(fd, 100, 0) == b"still here"
        os.pwrite(fd, b"!", 10)
        assert os.fstat(fd).st_size == 11 and os.fstat(fd).st_nlink == 0
        assert os.pread(fd, 100, 0) == b"still here!"
    finally:
        os.close(fd)
    assert errno_of(os.stat, p) == errno.ENOENT


def renameat2(src: Path, dst: Path, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD = -100
    if libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def test_rename(d):
    (d / "a").write_text("A")
    (d / "b").write_text("B")
    os.rename(d / "a", d / "b")  # replaces a file
    assert (d / "b").read_text() == "A" and not (d / "a").exists()
    (d / "sub").mkdir()
    os.rename(d / "b", d / "sub" / "c")  # across directories
    assert (d / "sub" / "c").read_text() == "A"
    (d / "empty").mkdir()
    (d / "full").mkdir()
    (d / "full" / "x").write_text("x")
    os.rename(d / "full", d / "empty")  # replaces an empty directory
    assert (d / "empty" / "x").exists() and not (d / "full").exists()
    (d / "full2").mkdir()
    assert errno_of(os.rename, d / "full2", d / "empty") == errno.ENOTEMPTY
    assert errno_of(os.rename, d / "sub" / "c", d / "empty") == errno.EISDIR
    assert errno_of(os.rename, d / "empty", d / "sub" / "c") == errno.ENOTDIR
    (d / "n1").write_text("1")
    (d / "n2").write_text("2")
    RENAME_NOREPLACE = 1
    assert errno_of(renameat2, d / "n1", d / "n2", RENAME_NOREPLACE) == errno.EEXIST
    renameat2(d / "n1", d / "n3", RENAME_NOREPLACE)
    assert (d / "n3").read_text() == "1"


def test_directories_and_errnos(d):
    (d / "dir").mkdir(0o755)
    assert stat.S_ISDIR((d / "dir").stat().st_mode)
    assert errno_of(os.mkdir, d / "dir") == errno.EEXIST
    (d / "dir" / "f").write_text("x")
    assert errno_of(os.rmdir, d / "dir") == errno.ENOTEMPTY
    assert errno_of(os.rmdir, d / "dir" / "f") == errno.ENOTDIR
    assert errno_of(os.unlink, d / "dir") == errno.EISDIR
    assert errno_of(os.open, d / "dir", os.O_WRONLY) == errno.EISDIR
    assert errno_of(os.stat, d / "dir" / "f" / "x") == errno.ENOTDIR
    assert errno_of(os.stat, d / "missing") == errno.ENOENT
    assert errno_of(os.open, d / ("n" * 256), os.O_CREAT | os.O_WRONLY) == errno.ENAMETOOLONG
    (d / ("n" * 255)).write_text("longest name")
    os.unlink(d / "dir" / "f")
    os.rmdir(d / "dir")
    assert not (d / "dir").exists()


async def mknod_many(conf: Path, parent: int, names: list[str]) -> None:
    """Create entries straight through the MDS, 64 at a time (the kernel would serialize
    creates in one directory, which makes 10,000 of them slow; listing is the test)."""
    async with Rados(conf) as r:
        mds = await MdsClient(r).open()
        gate = asyncio.Semaphore(64)

        async def one(name: str) -> None:
            async with gate:
                await mds.request(MdsRequest(op=MdsRequest.MKNOD, ino=parent, name=name,
                                             mode=stat.S_IFREG | 0o644))
        try:
            await asyncio.gather(*(one(n) for n in names))
        finally:
            await mds.close()


def test_readdir_ten_thousand_entries(d, cluster_module):
    names = [f"entry-{i:05d}" for i in range(10_000)]
    for name in names[:300]:  # some through the kernel, the rest straight to the MDS
        os.mknod(d / name, 0o644 | stat.S_IFREG)
    asyncio.run(mknod_many(cluster_module.conf, d.stat().st_ino, names[300:]))
    assert sorted(os.listdir(d)) == names
    with os.scandir(d) as it:
        seen = [(e.name, e.is_file()) for e in it]
    assert len(seen) == len(names) and all(is_file for _, is_file in seen)
    assert sum(1 for _ in d.iterdir()) == 10_000
    assert (d / names[-1]).stat().st_size == 0


def test_symlink_and_hard_links(d):
    (d / "target").write_text("T")
    os.symlink("target", d / "link")
    assert os.readlink(d / "link") == "target"
    assert (d / "link").read_text() == "T"
    assert stat.S_ISLNK(os.lstat(d / "link").st_mode)
    os.link(d / "target", d / "hard")
    assert (d / "target").stat().st_nlink == 2
    assert (d / "hard").stat().st_ino == (d / "target").stat().st_ino
    os.unlink(d / "target")
    assert (d / "hard").stat().st_nlink == 1 and (d / "hard").read_text() == "T"
    assert errno_of(os.link, d / "hard", d / "hard") == errno.EEXIST


def test_chmod_chown_utimens(d):
    p = d / "f"
    p.write_text("x")
    os.chmod(p, 0o600)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    os.chown(p, 1234, 5678)
    st = p.stat()
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.utime(p, ns=(1_000_000_000_123, 2_000_000_000_456))
    st = p.stat()
    assert st.st_atime_ns == 1_000_000_000_123 and st.st_mtime_ns == 2_000_000_000_456


def test_attribute_changes_on_an_open_file_are_checked_at_once_and_kept(d, cluster_module):
    """chmod/chown/utimens on a file open for writing are written back with the data
    report (sds/fs/fuse_ops.py): they must still be refused at once when not allowed,
    show at once, and be on the MDS after close."""
    p = d / "wb"
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"data")
        os.fchmod(fd, 0o4751)
        os.fchown(fd, 1000, 1000)   # root may; the setuid bit goes, as on any chown
        os.utime(fd, ns=(5_000_000_000, 6_000_000_000))
        st = os.fstat(fd)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o751, 1000, 1000)
        assert st.st_mtime_ns == 6_000_000_000
    finally:
        os.close(fd)
    os.chmod(d, 0o777)
    (d / "theirs").write_text("t")
    os.chmod(d / "theirs", 0o666)
    out = as_user(1000, d, "import os\nfd = os.open('theirs', os.O_WRONLY)\n"
                           "os.write(fd, b'x')\n"
                           "for f, a in ((os.fchmod, (0o777,)), (os.fchown, (1000, 1000)),"
                           " (os.utime, (None,)), (os.utime, ((1, 1),))):\n"
                           "    try: f(fd, *a)\n"
                           "    except OSError as e: print(e.errno, end=' ')\n"
                           "    else: print(0, end=' ')\n"
                           "os.close(fd)\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "0", "1"]  # EPERM, EPERM, ok (touch), EPERM
    assert stat.S_IMODE((d / "theirs").stat().st_mode) == 0o666

    async def on_the_mds() -> mds_pb2.InodeAttr:
        async with Rados(cluster_module.conf) as rados:
            mds = await MdsClient(rados).open()
            try:
                ino = os.stat(p).st_ino
                return (await mds.request(MdsRequest(op=MdsRequest.GETATTR, ino=ino))).attr
            finally:
                await mds.close()

    attr = asyncio.run(on_the_mds())
    assert (stat.S_IMODE(attr.mode), attr.uid, attr.gid, attr.size) == (0o751, 1000, 1000, 4)
    assert (attr.atime_ns, attr.mtime_ns) == (5_000_000_000, 6_000_000_000)


async def mds_request(conf: Path, req: MdsRequest) -> mds_pb2.MdsReply:
    """One request from a session of its own (root's, beside the mount's)."""
    async with Rados(conf) as rados:
        mds = await MdsClient(rados).open()
        try:
            return await mds.request(req)
        finally:
            await mds.close()


def test_a_buffered_chown_the_mds_refuses_is_dropped_not_left_pending(d, cluster_module):
    """The MDS saw another owner than the mount when the buffered fchown reached it: its
    refusal (NotPermitted, an EPERM that is no authentication error) drops the change;
    close succeeds, the data arrives and the MDS's owner stands."""
    os.chmod(d, 0o777)
    writer = subprocess.Popen(
        ["python3", "-c", "import os, sys\n"
                          "fd = os.open('f', os.O_CREAT | os.O_WRONLY, 0o644)\n"
                          "os.write(fd, b'data')\n"
                          "os.fchown(fd, 1000, 1000)\n"
                          "print(os.stat('f').st_ino, flush=True)\n"
                          "sys.stdin.readline()\n"
                          "try: os.close(fd)\n"
                          "except OSError as e: print(e.errno)\n"
                          "else: print(0)\n"],
        cwd=d, user=1000, group=1000, extra_groups=[], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ino = int(writer.stdout.readline())
        asyncio.run(mds_request(cluster_module.conf, MdsRequest(  # the MDS revokes nobody
            op=MdsRequest.WRITE_DONE, ino=ino, attr=mds_pb2.InodeAttr(uid=0, gid=0),
            set_mask=mds_pb2.SET_UID | mds_pb2.SET_GID)))
        out, err = writer.communicate("\n", timeout=60)
    finally:
        writer.kill()
        writer.wait()
    assert out.split() == ["0"], err  # close (the flush) succeeded
    attr = asyncio.run(mds_request(cluster_module.conf, MdsRequest(
        op=MdsRequest.GETATTR, ino=ino))).attr
    assert (attr.uid, attr.gid, attr.size) == (0, 0, 4)
    assert (d / "f").read_bytes() == b"data"


def as_user(uid: int, cwd: Path, code: str) -> subprocess.CompletedProcess:
    """Run python code as another user, in `cwd` (entered as root: the test's temporary
    directories above the mount are not searchable by others)."""
    return subprocess.run(["python3", "-c", code], cwd=cwd, user=uid, group=uid,
                          extra_groups=[], capture_output=True, text=True, timeout=60)


def test_permission_checks_for_other_users(d):
    os.chmod(d, 0o777)
    (d / "secret").write_text("root only")
    os.chmod(d / "secret", 0o600)
    probe = ("import errno, os\n"
             "def e(f, *a):\n"
             "    try: f(*a); return 0\n"
             "    except OSError as x: return x.errno\n"
             "print(e(open, 'secret'), e(os.chmod, 'secret', 0o666),"
             " e(os.chown, 'secret', 1000, 1000), e(os.unlink, 'secret'))\n")
    out = as_user(1000, d, probe)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["13", "1", "1", "0"]  # EACCES, EPERM, EPERM, ok (dir 777)
    mine = as_user(1000, d, "open('mine', 'w').write('u'); import os; "
                            "print(os.stat('mine').st_uid, os.stat('mine').st_gid)")
    assert mine.returncode == 0 and mine.stdout.split() == ["1000", "1000"], mine.stderr
    (d / "shared").write_text("s")
    os.chmod(d / "shared", 0o666)  # a writer who is not the owner may touch, not set times
    out = as_user(1000, d, "import os\nos.utime('shared')\n"
                           "try: os.utime('shared', (1, 1))\n"
                           "except OSError as e: print(e.errno)")
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr
    os.chmod(d, 0o1777)  # sticky: others may not remove what is not theirs
    (d / "rootfile").write_text("r")
    out = as_user(1000, d, "import os\ntry: os.unlink('rootfile')\n"
                           "except OSError as e: print(e.errno)")
    assert out.stdout.strip() == "1", out.stderr


def test_fifo_and_xattrs_and_statfs(d):
    os.mkfifo(d / "fifo")
    assert stat.S_ISFIFO((d / "fifo").stat().st_mode)
    p = d / "f"
    p.write_text("x")
    os.setxattr(p, "user.color", b"blue")
    os.setxattr(p, "user.size", b"L")
    assert os.getxattr(p, "user.color") == b"blue"
    assert set(os.listxattr(p)) >= {"user.color", "user.size"}
    os.removexattr(p, "user.size")
    assert errno_of(os.getxattr, p, "user.size") == errno.ENODATA
    st = os.statvfs(d)
    assert st.f_bsize > 0 and st.f_namemax == 255 and st.f_files > 0
    deadline = time.monotonic() + 30  # capacity comes from the mgr's first OSD reports
    while os.statvfs(d).f_blocks == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    st = os.statvfs(d)
    assert st.f_blocks > 0 and 0 < st.f_bavail <= st.f_blocks


def test_fsync_and_fdatasync(d):
    p = d / "f"
    with open(p, "wb") as f:
        f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
        os.fdatasync(f.fileno())
    assert p.stat().st_size == 1 << 20


def tree_digest(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames + dirnames):
            path = Path(dirpath) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            if stat.S_ISREG(st.st_mode):
                out[rel] = ("f", stat.S_IMODE(st.st_mode), st.st_mtime_ns,
                            hashlib.sha256(path.read_bytes()).hexdigest())
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(path))
            else:
                out[rel] = ("d", stat.S_IMODE(st.st_mode))
    return out


def source_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(REPO / "sds", src, ignore=shutil.ignore_patterns("__pycache__"))
    os.symlink("common/errors.py", src / "errors-link")
    return src


def test_cp_a_and_tar_round_trip(d, tmp_path):
    """posix-format tar keeps nanosecond mtimes, so trees must match exactly."""
    src = source_tree(tmp_path)
    subprocess.run(["cp", "-a", str(src), str(d / "copy")], check=True)
    assert tree_digest(d / "copy") == tree_digest(src)
    subprocess.run(["tar", "--format=posix", "-C", str(src), "-cf", str(d / "src.tar"), "."], check=True)
    (d / "untar").mkdir()
    subprocess.run(["tar", "-C", str(d / "untar"), "-xf", str(d / "src.tar")], check=True)
    assert tree_digest(d / "untar") == tree_digest(src)
    out = tmp_path / "back"
    out.mkdir()
    subprocess.run(f"tar --format=posix -C {d / 'copy'} -cf - . | tar -C {out} -xf -", shell=True, check=True)
    assert tree_digest(out) == tree_digest(src)


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_rsync(d, tmp_path):
    src = source_tree(tmp_path)
    subprocess.run(["rsync", "-a", f"{src}/", str(d / "r")], check=True)
    assert tree_digest(d / "r") == tree_digest(src)
    # an update: rsync writes changed files to a temporary name and renames it over
    (src / "common" / "errors.py").write_text("changed\n")
    os.chmod(src / "common" / "errors.py", 0o600)
    os.unlink(src / "cli" / "main.py")
    (src / "new-dir").mkdir()
    (src / "new-dir" / "f").write_bytes(os.urandom(5 << 20))
    subprocess.run(["rsync", "-a", "--delete", f"{src}/", str(d / "r")], check=True)
    assert tree_digest(d / "r") == tree_digest(src)


def test_git_init_and_commit(d):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x", "HOME": str(d)}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=d, env=env, check=True, capture_output=True,
                              text=True).stdout
    git("init", "-q", "-b", "main")
    for i in range(20):
        (d / f"file{i}.txt").write_text(f"content {i}\n" * 100)
    git("add", ".")
    git("commit", "-q", "-m", "first")
    (d / "file3.txt").write_text("changed\n")
    git("commit", "-q", "-am", "second")
    assert git("log", "--oneline").count("\n") == 2
    assert git("status", "--porcelain") == ""
    git("fsck", "--strict")


def test_sqlite_writes(d):
    db = sqlite3.connect(d / "test.db")
    db.execute("create table t (k integer primary key, v text)")
    with db:
        db.executemany("insert into t values (?, ?)", ((i, f"v{i}" * 20) for i in range(5000)))
    with db:
        db.execute("update t set v = 'x' where k % 3 = 0")
        db.execute("delete from t where k % 7 = 0")
    db.close()
    db = sqlite3.connect(d / "test.db")
    assert db.execute("pragma integrity_check").fetchone() == ("ok",)
    assert db.execute("select count(*) from t").fetchone()[0] == 5000 - len(range(0, 5000, 7))
    db.close()


SETID_PROBE = """
import json, os, stat
out = {}
for name in ("suid_sgid", "sgid_noexec", "suid"):
    fd = os.open(name, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"more")
    os.close(fd)
    out[name] = oct(stat.S_IMODE(os.stat(name).st_mode))
fd = os.open("ro", os.O_CREAT | os.O_RDWR | os.O_EXCL, 0o444)
os.write(fd, b"hello")
try:
    os.ftruncate(fd, 2)
    out["ftruncate"] = os.fstat(fd).st_size
except OSError as e:
    out["ftruncate"] = e.errno
os.close(fd)
out["ro_size"] = os.stat("ro").st_size
print(json.dumps(out, sort_keys=True))
"""


def test_setid_write_and_ftruncate_by_non_owner_as_on_a_local_dir(d, tmp_path):
    """A non-owner writing a setuid/setgid file clears the bits (the kernel asks with a
    SETATTR of the mode in the writer's name); ftruncate through a descriptor open for
    writing works whatever the mode. The same calls on a local directory agree."""
    results = []
    for where in (d, tmp_path / "local"):
        where.mkdir(exist_ok=True)
        os.chmod(where, 0o777)
        for name, mode in (("suid_sgid", 0o6777), ("sgid_noexec", 0o2766), ("suid", 0o4766)):
            (where / name).write_text("x")
            os.chmod(where / name, mode)
        out = as_user(1000, where, SETID_PROBE)
        assert out.returncode == 0, out.stderr
        results.append(out.stdout.strip())
    assert results[0] == results[1], results
    assert '"ftruncate": 2' in results[0] and '"suid_sgid": "0o777"' in results[0], results


FALLOCATE_PROBE = """
import ctypes, hashlib, json, os, random
libc = ctypes.CDLL(None, use_errno=True)
def fallocate(fd, mode, off, n):
    if libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(n)) != 0:
        return ctypes.get_errno()
    return 0
def state(fd):
    os.fsync(fd)
    data = open("f", "rb").read()
    return [os.fstat(fd).st_size, hashlib.sha256(data).hexdigest()[:16]]
MiB = 1 << 20
fd = os.open("f", os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, random.Random(7).randbytes(3 * MiB + 123))
out = []
for mode, off, n in ((0, 0, 10 * MiB), (0, MiB, 100), (1, 20 * MiB, MiB),
                     (3, MiB + 100, 5 * MiB), (3, 9 * MiB, 4 * MiB), (0x10, 100, 1000),
                     (0x11, 2 * MiB, 9 * MiB), (0x10, 10 * MiB - 10, 100), (2, 0, 10)):
    out.append([mode, fallocate(fd, mode, off, n)] + state(fd))
os.posix_fallocate(fd, 0, 12 * MiB)
out.append(["posix_fallocate"] + state(fd))
os.close(fd)
print(json.dumps(out))
"""


def test_fallocate_modes_as_on_a_local_dir(d, tmp_path):
    """fallocate(2) mode 0, KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE (with and without
    KEEP_SIZE, across object boundaries, past the size) by a non-root user: the same
    sizes, contents and errnos as on a local directory."""
    results = []
    for where in (d, tmp_path / "local"):
        where.mkdir(exist_ok=True)
        os.chmod(where, 0o777)
        out = as_user(1000, where, FALLOCATE_PROBE)
        assert out.returncode == 0, out.stderr
        results.append(out.stdout.strip())
    assert results[0] == results[1], results
