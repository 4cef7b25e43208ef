"""Landlock and seccomp launcher run as ``python -I -S _landlock_helper.py SPEC``: a subreaper
supervisor whose child restricts itself (files with Landlock; every ``socket()`` denied by
seccomp; capabilities dropped) and executes the job; whatever the job leaves running is killed.

Standard library only; also imported by ``sandbox`` for :func:`landlock_abi`."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import signal
import struct
import sys
from typing import Any

__all__ = ["landlock_abi", "main"]

SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_TRUNCATE = 1 << 14
FS_IOCTL_DEV = 1 << 15
NET_BIND_TCP = 1
NET_CONNECT_TCP = 2
SCOPE_ABSTRACT_UNIX_SOCKET = 1
SCOPE_SIGNAL = 2

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_CAPBSET_DROP = 24
SECCOMP_MODE_FILTER = 2

# seccomp-bpf
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_RET_K = 0x06
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
EACCES = 13
ENOSYS = 38
ARCHES = {
    # machine: (AUDIT_ARCH, socket, io_uring_setup, x32 bit or 0, truncate)
    "x86_64": (0xC000003E, 41, 425, 0x40000000, 76),
    "aarch64": (0xC00000B7, 198, 425, 0, 45),
}
O_PATH = 0o10000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _fail(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 when Landlock is unavailable."""
    if sys.platform != "linux":
        return 0
    abi = _libc.syscall(
        ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET),
        None,
        ctypes.c_size_t(0),
        ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION),
    )
    return int(abi) if abi > 0 else 0


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # EXECUTE .. MAKE_SYM (ABI 1)
    if abi >= 2:
        rights |= 1 << 13  # REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def _file_rights(abi: int) -> int:
    return (FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV) & _fs_rights(
        abi
    )


def _ruleset(abi: int, network: bool) -> int:
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 and not network else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    attr = struct.pack("=QQQ", _fs_rights(abi), net, scoped)[:size]
    buf = ctypes.create_string_buffer(attr, size)
    fd = _libc.syscall(
        ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), buf, ctypes.c_size_t(size), ctypes.c_uint32(0)
    )
    if fd < 0:
        raise _fail("landlock_create_ruleset")
    return int(fd)


def _allow(ruleset: int, path: str, access: int, abi: int) -> None:
    try:
        fd = os.open(path, O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not os.path.isdir(path):
            access &= _file_rights(abi)
        attr = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)
        if (
            _libc.syscall(
                ctypes.c_long(SYS_LANDLOCK_ADD_RULE),
                ctypes.c_int(ruleset),
                ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                attr,
                ctypes.c_uint32(0),
            )
            != 0
        ):
            raise _fail(f"landlock_add_rule {path}")
    finally:
        os.close(fd)


def _seccomp_program(network: bool, abi: int) -> bytes:
    arch, nr_socket, nr_io_uring, x32, nr_truncate = ARCHES[platform.machine()]

    def op(code: int, jt: int, jf: int, k: int) -> bytes:
        return struct.pack("=HBBI", code, jt, jf, k)

    prog = [
        op(BPF_LD_W_ABS, 0, 0, 4),  # arch
        op(BPF_JEQ_K, 1, 0, arch),
        op(BPF_RET_K, 0, 0, RET_KILL_PROCESS),
        op(BPF_LD_W_ABS, 0, 0, 0),  # syscall number
    ]
    if x32:
        prog += [op(BPF_JGE_K, 0, 1, x32), op(BPF_RET_K, 0, 0, RET_ERRNO | ENOSYS)]
    if not network:
        prog += [op(BPF_JEQ_K, 0, 1, nr_socket), op(BPF_RET_K, 0, 0, RET_ERRNO | EACCES)]
    if abi < 3:  # Landlock governs truncate(2) only from ABI 3
        prog += [op(BPF_JEQ_K, 0, 1, nr_truncate), op(BPF_RET_K, 0, 0, RET_ERRNO | EACCES)]
    prog += [
        op(BPF_JEQ_K, 0, 1, nr_io_uring),
        op(BPF_RET_K, 0, 0, RET_ERRNO | ENOSYS),
        op(BPF_RET_K, 0, 0, RET_ALLOW),
    ]
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _install_seccomp(network: bool, abi: int) -> None:
    code = _seccomp_program(network, abi)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if (
        _libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(prog), 0, 0)
        != 0
    ):
        raise _fail("seccomp")


def _restrict(spec: dict[str, Any]) -> None:
    abi = landlock_abi()
    if abi < 1:
        raise OSError("Landlock is not available")
    network = bool(spec.get("network"))
    ruleset = _ruleset(abi, network)
    read = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
    for path in spec["readable"]:
        _allow(ruleset, str(path), read, abi)
    for dev in spec["devices"]:
        _allow(ruleset, str(dev), FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE, abi)
    _allow(ruleset, str(spec["writable"]), _fs_rights(abi), abi)
    for extra in spec.get("also_writable", []):
        _allow(ruleset, str(extra), _fs_rights(abi), abi)
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) != 0:
            break
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), 0, 0, 0) != 0:
        raise _fail("no_new_privs")
    if (
        _libc.syscall(
            ctypes.c_long(SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint32(0)
        )
        != 0
    ):
        raise _fail("landlock_restrict_self")
    os.close(ruleset)
    _install_seccomp(network, abi)


def _children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reap_all() -> None:
    """Kill every descendant (orphans are re-parented to this subreaper) until none is left."""
    me = os.getpid()
    while True:
        for kid in _children_of(me):
            _kill(kid)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), 0, 0, 0) != 0:
        sys.stderr.write("safepip sandbox: cannot become a subreaper\n")
        return 125
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            _restrict(spec)
            os.chdir(str(spec["cwd"]))
            args = [str(a) for a in spec["argv"]]
            env = {str(k): str(v) for k, v in spec["env"].items()}
            os.execve(args[0], args, env)
        except BaseException as exc:  # report, never run unrestricted
            sys.stderr.write(f"safepip sandbox: {exc}\n")
            sys.stderr.flush()
            os._exit(125)

    def on_term(*_: object) -> None:
        _reap_all()
        os._exit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    _, status = os.waitpid(pid, 0)
    _reap_all()
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
