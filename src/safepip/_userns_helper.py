"""Namespace launcher run as ``python -I -S _userns_helper.py ROOT SPEC``: user, mount, pid,
network, IPC and UTS namespaces, a tmpfs root with read-only binds, no capabilities at exec.

Standard library only (it runs in a fresh single-threaded interpreter: ``unshare(CLONE_NEWUSER)``
refuses multi-threaded callers)."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from typing import Any

__all__ = ["main"]

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def _locked_flags(path: str) -> int:
    """Flags a bind mount inherits from its source and may not drop in a user namespace."""
    f = os.statvfs(path).f_flag
    flags = 0
    for st, ms in (
        (2, MS_NOSUID),
        (4, MS_NODEV),
        (8, MS_NOEXEC),
        (1024, MS_NOATIME),
        (2048, MS_NODIRATIME),
        (4096, MS_RELATIME),
    ):
        if f & st:
            flags |= ms
    return flags


def _make_point(target: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "w").close()


def _bind(root: str, path: str, *, readonly: bool) -> None:
    target = root + path
    if os.path.islink(path) and path.count("/") == 1:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.symlink(os.readlink(path), target)
        return
    _make_point(target, os.path.isdir(path))
    _mount(path, target, None, MS_BIND | MS_REC)
    if readonly:
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _locked_flags(path))


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _enter_namespaces(network: bool) -> None:
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if not network:
        flags |= CLONE_NEWNET
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")


def _build_root(root: str, spec: dict[str, Any]) -> None:
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    os.makedirs(root + "/tmp", exist_ok=True)
    _mount(
        "tmpfs",
        root + "/tmp",
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"size={int(spec['tmp_bytes'])},mode=1777",
    )
    readable = [str(p) for p in spec["readable"]]
    for path in readable:
        _bind(root, path, readonly=True)
    os.makedirs(root + "/dev", exist_ok=True)
    for dev in spec["devices"]:
        if os.path.exists(dev):
            _make_point(root + dev, False)
            _mount(dev, root + dev, None, MS_BIND)
    os.makedirs(root + "/dev/shm", exist_ok=True)  # private: POSIX semaphores (multiprocessing)
    _mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=268435456,mode=1777")
    writable = str(spec["writable"])
    _bind(root, writable, readonly=False)
    for extra in spec.get("also_writable", []):
        _bind(root, str(extra), readonly=False)
    os.makedirs(root + "/proc", exist_ok=True)
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    old = root + "/.old-root"
    os.makedirs(old, exist_ok=True)
    machine = os.uname().machine
    _check(
        _libc.syscall(ctypes.c_long(SYS_PIVOT_ROOT[machine]), root.encode(), old.encode()),
        "pivot_root",
    )
    os.chdir("/")
    _check(_libc.umount2(b"/.old-root", ctypes.c_int(MNT_DETACH)), "umount old root")
    os.rmdir("/.old-root")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _drop_privileges() -> None:
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) != 0:
            break
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), 0, 0, 0), "no_new_privs")


def _child(root: str, spec: dict[str, Any]) -> None:
    """pid 1 of the new pid namespace: when it exits, the kernel kills every process left."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0), "pdeathsig")
    _build_root(root, spec)
    _drop_privileges()
    os.chdir(str(spec["cwd"]))
    argv = [str(a) for a in spec["argv"]]
    env = {str(k): str(v) for k, v in spec["env"].items()}
    os.execve(argv[0], argv, env)


def main(argv: list[str]) -> int:
    root, spec = argv[1], json.loads(argv[2])
    try:
        _enter_namespaces(bool(spec.get("network")))
        pid = os.fork()
    except OSError as exc:
        sys.stderr.write(f"safepip sandbox: {exc}\n")
        return 125
    if pid == 0:
        try:
            _child(root, spec)
        except BaseException as exc:  # report, never run outside the namespaces
            sys.stderr.write(f"safepip sandbox: {exc}\n")
            sys.stderr.flush()
            os._exit(125)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
