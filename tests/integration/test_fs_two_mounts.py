"""Two mounts of one filesystem, each its own client process (as on two hosts).

What is promised (sds/fs/fuse_ops.py): close-to-open consistency (a file written and
closed on one mount reads back whole after open on the other); namespace changes are
seen by the other mount within the attribute/entry timeout (1 s); each O_APPEND write
is atomic across mounts, so concurrent appenders lose nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest
from fsmounts import FS_CLUSTER, fsync_dir, mounted, requires_mds, sds

from sds.fs.fuse_ops import ATTR_TIMEOUT_S
from sds.fs.mount import state_file

pytestmark = [pytest.mark.integration, FS_CLUSTER, requires_mds]

SEEN_WITHIN_S = 5.0


@pytest.fixture(scope="module")
def two(cluster_module, tmp_path_factory):
    base = tmp_path_factory.mktemp("two")
    with mounted(cluster_module, base / "a") as a, mounted(cluster_module, base / "b") as b:
        assert a.pid != b.pid
        yield a.path, b.path


def eventually(check, timeout: float = SEEN_WITHIN_S):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout}s: {check}")
        time.sleep(0.05)


def test_write_close_on_one_read_on_other(two):
    a, b = two
    data = os.urandom(9 << 20)
    (a / "f").write_bytes(data)
    assert (b / "f").read_bytes() == data
    # overwrite (same size, new bytes) and extend: the other side's cache must not win
    data2 = os.urandom(10 << 20)
    (a / "f").write_bytes(data2)
    assert (b / "f").read_bytes() == data2
    with open(b / "f", "r+b") as f:
        f.seek(100)
        f.write(b"from b")
    assert (a / "f").read_bytes()[:106] == data2[:100] + b"from b"


def test_small_files_closed_on_one_are_whole_on_the_other_at_once(two):
    """A close on one mount may return before its size report (it is deferred to the
    release): the other mount's stat, readdir and read of the file right after the close
    still see it whole, because the MDS makes the writer report first."""
    a, b = two
    for d in ("by_stat", "by_readdir"):
        (a / d).mkdir()
    made = {}
    for i in range(30):
        name, data = f"f{i}", os.urandom(100 + 37 * i)
        made[name] = data
        (a / "by_stat" / name).write_bytes(data)  # closed, not fsync'd
        assert (b / "by_stat" / name).stat().st_size == len(data)  # LOOKUP
        (a / "by_readdir" / name).write_bytes(data)
        with os.scandir(b / "by_readdir") as entries:  # sizes from READDIR (readdirplus)
            sizes = {e.name: e.stat(follow_symlinks=False).st_size for e in entries}
        assert sizes == {n: len(d) for n, d in made.items()}
    for name, data in made.items():
        assert (b / "by_stat" / name).read_bytes() == data
        assert (b / "by_readdir" / name).read_bytes() == data


def filled_dir(mnt, name: str, count: int = 40) -> list[str]:
    (mnt / name).mkdir()
    names = [f"f{i:03d}" for i in range(count)]
    for n in names:
        (mnt / name / n).write_bytes(n.encode())
    return names


def unlinks_are_exact_on_the_other_mount(a, b, prefix: str) -> None:
    """The first mount empties a directory (taking its cap); right after, the second
    mount's listing, O_EXCL create of a removed name and rmdir see it empty."""
    def emptied(name: str) -> list[str]:
        names = filled_dir(a, prefix + name)
        for n in names:
            os.unlink(a / (prefix + name) / n)
        return names

    emptied("list")
    assert os.listdir(b / (prefix + "list")) == []
    last = emptied("excl")[-1]
    os.close(os.open(b / (prefix + "excl") / last, os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                     0o644))  # gone: created
    with pytest.raises(FileExistsError):  # and now there, for the first mount too
        os.open(a / (prefix + "excl") / last, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    assert os.listdir(a / (prefix + "excl")) == [last]
    emptied("rmdir")
    os.rmdir(b / (prefix + "rmdir"))  # not ENOTEMPTY: the pending unlinks landed first
    eventually(lambda: not (a / (prefix + "rmdir")).exists())


def test_unlinks_under_a_directory_cap_are_exact_on_the_other_mount(two):
    """A mount removing the files of a directory no other mount looks at takes the
    directory's exclusive cap and answers the unlinks itself; the other mount's requests
    about the directory are served only once those unlinks have landed."""
    unlinks_are_exact_on_the_other_mount(*two, "cap_")


@pytest.mark.cluster_opts(mds=1, extra_conf={"client_inject_unlink_delay": 1.0})
def test_unlinks_held_back_by_the_cap_holder_land_before_the_other_mount_looks(cluster,
                                                                               tmp_path):
    """The same, with the holder keeping each answered unlink for a second before it
    sends it: only the revoke of the directory cap makes the other mount right (this
    fails with the MDS's revoke taken out)."""
    with mounted(cluster, tmp_path / "a") as a, mounted(cluster, tmp_path / "b") as b:
        unlinks_are_exact_on_the_other_mount(a.path, b.path, "held_")


@pytest.mark.cluster_opts(mds=1, extra_conf={"client_inject_unlink_delay": 1.0,
                                             "mds_revoke_timeout": 2})
def test_fsync_of_a_directory_makes_its_answered_unlinks_durable(cluster, tmp_path):
    """Unlinks a mount answered under a directory cap are sent by fsync(2) of the
    directory before it returns: a crash (kill -9) of the mount right after loses none
    (without the wait in fsyncdir the held-back unlinks die with the process)."""
    with mounted(cluster, tmp_path / "a") as a:
        names = filled_dir(a.path, "durable")
        for n in names:
            os.unlink(a.path / "durable" / n)
        fsync_dir(a.path / "durable")
        a.kill()
    with mounted(cluster, tmp_path / "b") as b:  # its listing evicts the dead holder
        assert os.listdir(b.path / "durable") == []


@pytest.mark.cluster_opts(mds=1, extra_conf={"client_inject_unlink_delay": 1.0})
def test_a_listing_elsewhere_shows_link_counts_after_unlinks_answered_here(cluster,
                                                                             tmp_path):
    """A listing of another directory need not wait for the unlinks a mount answered
    and still holds back, but one showing a hard-linked file does: the attributes it
    hands the kernel then count the link just removed as gone."""
    with mounted(cluster, tmp_path / "a") as a:
        here, there = a.path / "here", a.path / "there"
        here.mkdir()
        there.mkdir()
        for name in ("x0", "x1"):
            (here / name).write_bytes(b"x")
        (there / "f").write_bytes(b"f")
        os.link(there / "f", here / "h")
        os.unlink(here / "x0")  # takes the directory's cap: the next unlinks wait here
        os.unlink(here / "h")
        assert os.listdir(there) == ["f"]
        assert os.stat(there / "f").st_nlink == 1
        assert sorted(os.listdir(here)) == ["x1"]


def test_unlinks_answered_by_the_mount_are_seen_by_its_own_callers(two):
    """After unlinks answered under a directory cap, the same mount finds the names gone,
    lists none of them, and an open file unlinked among them shows no links."""
    a, _ = two
    names = filled_dir(a, "cap_self")
    with open(a / "cap_self" / names[0], "rb") as kept:
        for n in names:
            os.unlink(a / "cap_self" / n)
        assert os.fstat(kept.fileno()).st_nlink == 0
        assert kept.read() == names[0].encode()
    assert os.listdir(a / "cap_self") == []
    assert not any((a / "cap_self" / n).exists() for n in names)
    os.rmdir(a / "cap_self")


def test_o_excl_in_a_directory_one_mount_holds_the_cap_of_is_exclusive(two):
    """Lock files: O_EXCL creates of one name from both mounts, right after one of them
    unlinked names in the directory (holding its cap): exactly one wins, every time."""
    a, b = two
    names = filled_dir(a, "cap_lock", 10)
    for n in names:
        os.unlink(a / "cap_lock" / n)
    start = threading.Barrier(2)

    def take(mnt):
        start.wait()
        try:
            os.close(os.open(mnt / "cap_lock" / "lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                             0o644))
            return mnt
        except FileExistsError:
            return None

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for _ in range(10):
            won = [m for m in pool.map(take, (a, b)) if m is not None]
            assert len(won) == 1
            os.unlink(won[0] / "cap_lock" / "lock")  # the winner's cap, if it gets one


def test_misses_answered_in_a_directory_the_mount_made_are_exact(two):
    """A mount answers lookups of missing names itself in a directory it made and holds
    the cap of: once the kernel asks again, each name it added there (create, mknod,
    mkdir, symlink, link, rename) is found, a removed or never added one is not, and a
    name the other mount adds (taking the cap back) is found as well."""
    a, b = two
    d = a / "own"
    d.mkdir()
    (d / "f").write_bytes(b"f")
    os.mkfifo(d / "p")
    (d / "sub").mkdir()
    (d / "sub" / "x").write_bytes(b"x")
    os.symlink("g", d / "s")
    os.link(d / "f", d / "h")
    os.rename(d / "f", d / "g")
    (a / "outside").write_bytes(b"o")
    os.rename(a / "outside", d / "moved")
    time.sleep(ATTR_TIMEOUT_S + 0.5)  # the kernel's entries expire: it asks the mount
    for n in ("p", "sub", "s", "h", "g", "moved"):
        assert os.path.lexists(d / n), n
    assert not os.path.lexists(d / "f") and not os.path.lexists(d / "never")
    assert (d / "sub" / "x").read_bytes() == b"x" and (d / "s").read_bytes() == b"f"
    (b / "own" / "from_b").write_bytes(b"b")
    assert (d / "from_b").read_bytes() == b"b"
    assert sorted(os.listdir(d)) == ["from_b", "g", "h", "moved", "p", "s", "sub"]


def test_rename_and_unlink_seen_on_other(two):
    a, b = two
    (a / "old").write_text("x")
    eventually(lambda: (b / "old").exists())
    os.rename(a / "old", a / "new")
    eventually(lambda: (b / "new").read_text() == "x" and not (b / "old").exists())
    (b / "dir").mkdir()
    eventually(lambda: (a / "dir").is_dir())
    os.unlink(b / "new")
    eventually(lambda: not (a / "new").exists())


APPENDER = """
import os, sys
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for i in range(n):
    os.write(fd, f"{tag} {i:06d}\\n".encode())
os.close(fd)
"""


def test_concurrent_appends_from_both_lose_nothing(two):
    a, b = two
    n = 200
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(mnt / "log"), tag, str(n)])
             for mnt, tag in ((a, "A"), (b, "B"), (a, "C"), (b, "D"))]
    for p in procs:
        assert p.wait(timeout=300) == 0
    for mnt in (a, b):
        lines = (mnt / "log").read_text().splitlines()
        assert sorted(lines) == sorted(f"{t} {i:06d}" for t in "ABCD" for i in range(n))
        for tag in "ABCD":  # each writer's records stay in its own order
            mine = [line for line in lines if line.startswith(tag)]
            assert mine == sorted(mine)


def test_attribute_write_back_is_ordered_with_changes_elsewhere(two):
    """A chmod/utimens buffered on one mount's open file lands before a chmod made on the
    other mount meanwhile (the MDS revokes the writer first), never after it."""
    a, b = two
    (a / "attrs").write_text("v1")
    eventually(lambda: (b / "attrs").exists())
    fd = os.open(a / "attrs", os.O_WRONLY)
    try:
        os.write(fd, b"v2")
        os.fchmod(fd, 0o640)
        os.utime(fd, ns=(7_000_000_000, 8_000_000_000))
        os.chmod(b / "attrs", 0o604)
    finally:
        os.close(fd)

    def settled(mnt) -> bool:
        st = (mnt / "attrs").stat()
        return (stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_size) == (0o604, 8_000_000_000, 2)

    for mnt in (a, b):
        eventually(lambda mnt=mnt: settled(mnt))
    assert (b / "attrs").read_bytes() == b"v2"


@pytest.mark.cluster_opts(mds=2, extra_conf={"mds_revoke_timeout": 2})
@pytest.mark.parametrize("recover", ["clean", "no"])
def test_an_evicted_mount_recovers_with_a_new_session(cluster, tmp_path, recover):
    """--recover-session clean (the default): a mount the MDS evicted (here: frozen while
    another mount needed its file) fails what it had open, then carries on as a new,
    unfenced client instance; its old instance stays blocklisted. With "no" it keeps
    failing until mounted again."""
    with mounted(cluster, tmp_path / "a", "--recover-session", recover) as a, \
            mounted(cluster, tmp_path / "b") as b:
        old_client = json.loads(state_file(os.path.realpath(a.path)).read_text())["client"]
        fd = os.open(a.path / "held", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            os.write(fd, b"never reported")
            os.kill(a.pid, signal.SIGSTOP)
            try:  # b's open revokes a, which cannot answer: evicted after 2 s
                assert (b.path / "held").read_bytes() == b""
            finally:
                os.kill(a.pid, signal.SIGCONT)

            def old_handle_fails() -> bool:
                try:
                    os.write(fd, b"x")
                    os.fsync(fd)
                except OSError as e:
                    return e.errno in (errno.EIO, errno.ESHUTDOWN)
                return False

            eventually(old_handle_fails, timeout=30)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
        if recover == "clean":
            eventually(lambda: (a.path / "after").write_text("back") == 4, timeout=30)
            eventually(lambda: (b.path / "after").read_text() == "back")
        else:
            with pytest.raises(OSError) as e:
                (a.path / "after").write_text("back")
            assert e.value.errno == errno.EIO
        listed = sds("--conf", str(cluster.conf), "osd", "blocklist", "ls", "--format", "json")
        fenced = [e["addr"] for e in json.loads(listed.stdout)["blocklist"]]
        assert fenced == [old_client]


def _own_dir(path) -> None:
    """A directory the mount makes (and holds the cap of): its creates are answered there,
    once the mount's first inode numbers (ALLOC_INOS, asked for at the mkdir) arrived."""
    path.mkdir()
    time.sleep(0.5)


@pytest.mark.cluster_opts(mds=1, extra_conf={"client_inject_create_delay": 1.0})
def test_creates_held_back_by_the_mount_land_before_the_other_mount_looks(cluster, tmp_path):
    """A mount answers creates in a directory it made before the MDS has them (held back
    a second each here): the other mount's listing, stat and read right after see every
    file whole, with the attributes the creating mount answered (owner, mode after the
    umask, the group of a setgid directory, the creation time)."""
    with mounted(cluster, tmp_path / "a") as a, mounted(cluster, tmp_path / "b") as b:
        made = {f"f{i}": os.urandom(100 + 37 * i) for i in range(6)}
        made.update({f"e{i}": b"" for i in range(4)})  # not written: times as created
        _own_dir(a.path / "plain")
        (a.path / "setgid").mkdir()
        os.chown(a.path / "setgid", 0, 4242)
        os.chmod(a.path / "setgid", 0o2777)
        time.sleep(0.5)
        answered = {}
        old_umask = os.umask(0o027)
        try:
            for d in ("plain", "setgid"):
                for name, data in made.items():
                    if data:
                        (a.path / d / name).write_bytes(data)
                    else:
                        os.close(os.open(a.path / d / name, os.O_CREAT | os.O_WRONLY, 0o666))
                    answered[d, name] = os.stat(a.path / d / name)
        finally:
            os.umask(old_umask)
        for d in ("plain", "setgid"):
            assert sorted(os.listdir(b.path / d)) == sorted(made)
            for name, data in made.items():
                seen, mine = os.stat(b.path / d / name), answered[d, name]
                assert (seen.st_ino, seen.st_mode, seen.st_uid, seen.st_gid, seen.st_size) \
                    == (mine.st_ino, mine.st_mode, mine.st_uid, mine.st_gid, mine.st_size)
                if not data:
                    assert (seen.st_mtime_ns, seen.st_ctime_ns) == (mine.st_mtime_ns,
                                                                    mine.st_ctime_ns)
                assert seen.st_mode & 0o777 == 0o640
                assert seen.st_gid == (4242 if d == "setgid" else 0)
                assert (b.path / d / name).read_bytes() == data


@pytest.mark.cluster_opts(mds=1, extra_conf={"client_inject_create_delay": 1.0,
                                             "mds_revoke_timeout": 2})
async def test_creates_answered_by_a_mount_die_with_it_unless_fsynced(cluster, tmp_path):
    """Created and written, not fsync'd, in a directory the mount made: kill -9 of the
    mount before its creates reach the MDS (held back a second here) loses the files,
    as a crash loses unsynced creates on any filesystem, and leaves no data objects
    behind (a file's data waits for its create). fsync(2) of the directory, or of a
    file, makes the creates durable first: those files survive the kill."""
    from sds.mds import layout

    def write(path, data: bytes, fsync: bool = False) -> int:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            if fsync:
                os.fsync(fd)
            return os.fstat(fd).st_ino
        finally:
            os.close(fd)

    def work(a) -> dict[str, int]:
        inos = {}
        for d in ("lost", "kept"):
            _own_dir(a / d)
        for i in range(10):
            inos[f"kept/f{i}"] = write(a / "kept" / f"f{i}", b"k" * 5000)
        fsync_dir(a / "kept")
        inos["lost/synced"] = write(a / "lost" / "synced", b"s" * 5000, fsync=True)
        for i in range(10):  # killed right after: these creates are still held back
            inos[f"lost/f{i}"] = write(a / "lost" / f"f{i}", b"x" * 5000)
        return inos

    with mounted(cluster, tmp_path / "a") as a:
        inos = await asyncio.to_thread(work, a.path)
        a.kill()
    async with cluster.rados() as rados:
        data = rados.ioctx("sdsfs_data")
        lost = [ino for name, ino in inos.items() if name.startswith("lost/f")]
        assert not [ino for ino in lost if await data.exists(layout.data_oid(ino, 0))]
    with mounted(cluster, tmp_path / "b") as b:  # its listings evict the dead holder
        assert os.listdir(b.path / "lost") == ["synced"]
        assert (b.path / "lost" / "synced").read_bytes() == b"s" * 5000
        assert sorted(os.listdir(b.path / "kept")) == sorted(f"f{i}" for i in range(10))
