"""`sds mount` and `sds umount`: the FUSE client as a process of its own (sds.fs.mount)."""

from __future__ import annotations

from sds.cli.commands import Context, Output, arg, cli


@cli("mount", rados=False, args=(
    arg("mountpoint", metavar="MOUNTPOINT"),
    arg("--fs", default=None, help="filesystem name (default: the only one, see `sds fs ls`)"),
    arg("--root", default="/", help="directory of the filesystem to mount (default /)"),
    arg("--ro", action="store_true", help="read-only: every change fails with EROFS"),
    arg("-f", "--foreground", action="store_true",
        help="stay in the foreground, log to stderr, until unmounted"),
    arg("--log-file", dest="log_file", default=None,
        help="log of the mount process (default <cluster dir>/out/mount.<mountpoint>.log)"),
    arg("--recover-session", dest="recover_session", choices=("clean", "no"), default="clean",
        help="after an eviction by the MDS: 'clean' continues with a new session (files "
             "open then fail with EIO until closed), 'no' leaves the mount failing until "
             "mounted again (default clean)"),
))
def mount(ctx: Context, a) -> Output:
    """Mount an SDS filesystem with FUSE; returns once the mount is live."""
    from sds.common.config import find_conf
    from sds.fs.mount import MountOptions
    from sds.fs.mount import mount as do_mount

    if not a.root.startswith("/"):
        a.root = "/" + a.root
    opts = MountOptions(mountpoint=a.mountpoint, conf=str(find_conf(a.conf)),
                        entity=a.name, keyring=a.keyring, fs=a.fs, root=a.root,
                        read_only=a.ro, log_file=a.log_file,
                        recover_session=a.recover_session)
    status = do_mount(opts, foreground=a.foreground)
    if a.foreground:
        return Output(status, f"unmounted {status['mountpoint']}")
    return Output(status, f"mounted on {status['mountpoint']} (pid {status['pid']}, "
                          f"client {status.get('client')}, log {status.get('log')})")


@cli("umount", "unmount", rados=False, args=(
    arg("mountpoint", metavar="MOUNTPOINT"),
    arg("-l", "--lazy", action="store_true", help="detach now even if busy (umount -l)"),
))
def umount(ctx: Context, a) -> Output:
    """Unmount an SDS mount and wait for its client process to exit."""
    from sds.fs.mount import umount as do_umount

    status = do_umount(a.mountpoint, lazy=a.lazy)
    return Output(status, f"unmounted {status['mountpoint']}")
