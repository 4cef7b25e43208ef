"""The sandbox for untrusted build code: no network, no home, no secrets, writes only to the build
directory, bounded time; the backend is chosen by a self-test run inside each candidate."""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from safepip.errors import PolicyRefusal

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "Choice",
    "Completed",
    "Job",
    "Limits",
    "SandboxUnavailable",
    "Unsandboxed",
    "backends",
    "choose",
    "describe",
    "run",
]

_HERE = Path(__file__).resolve().parent
USERNS_HELPER = _HERE / "_userns_helper.py"
LANDLOCK_HELPER = _HERE / "_landlock_helper.py"

# Files under /etc that programs read and that hold no secrets (never pip.conf, netrc, shadow).
ETC_ALLOWED = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/os-release",
    "/etc/debian_version",
    "/etc/mime.types",
)
# System directories visible read-only (toolchains, the C library, the interpreter).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
# Read as well when a project is allowed the network: name resolution and CA certificates.
NETWORK_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/ssl", "/etc/ca-certificates", "/etc/pki")


class SandboxUnavailable(PolicyRefusal):
    """No sandbox backend works here, so no build code may run."""

    reference = "no-sandbox"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one sandboxed run. Memory is capped with RLIMIT_DATA (heap and writable
    mappings), not RLIMIT_AS: Go and Rust reserve large address ranges they never touch."""

    timeout: float = 600.0
    cpu_seconds: int = 3600
    memory_bytes: int = 8 << 30
    file_size_bytes: int = 4 << 30
    open_files: int = 4096
    processes: int = 1024  # headroom above the user's current process count
    tmp_bytes: int = 1 << 30


@dataclass(frozen=True, slots=True)
class Job:
    """One program to run inside the sandbox.

    ``writable`` is the only directory the program may change; ``readable`` are extra paths it
    may read (the interpreter, the build environment, our driver); ``env`` is its whole
    environment. Paths keep their real names inside every backend."""

    argv: tuple[str, ...]
    cwd: Path
    writable: Path
    readable: tuple[Path, ...]
    env: Mapping[str, str]
    log: Path
    network: bool = False  # only by the user's explicit per-project allowance
    # A user's own project directory, which its build writes into (build/, *.egg-info).
    also_writable: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class Completed:
    """How a sandboxed run ended."""

    returncode: int
    timed_out: bool
    backend: str


@dataclass(frozen=True, slots=True)
class Choice:
    """The backend chosen, and why each other candidate was not."""

    backend: Backend
    rejected: tuple[tuple[str, str], ...] = ()


def _launcher_env() -> dict[str, str]:
    """The environment of the launcher process itself: nothing of safepip's own environment, so
    that no secret can be read back through ``/proc/<launcher>/environ`` (bubblewrap's
    ``--clearenv`` alone leaks it that way)."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def _existing(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if (path.exists() or path.is_symlink()) and path not in out:
            out.append(path)
    return out


def _readable_paths(job: Job) -> list[Path]:
    """Every path the job may read, system directories first, without duplicates or paths
    already covered by a parent in the list."""
    network = NETWORK_FILES if job.network else ()
    wanted = _existing([*SYSTEM_DIRS, *ETC_ALLOWED, *network, *job.readable])
    out: list[Path] = []
    for path in wanted:
        if any(path == p or p in path.parents for p in out if not p.is_symlink()):
            continue
        out.append(path)
    return out


class Backend(ABC):
    """One way of isolating a process. ``problem`` says why it cannot work here (or None);
    ``launch`` starts a job; ``stop`` ends it and everything it started."""

    name: str = ""

    @abstractmethod
    def problem(self) -> str | None: ...

    @abstractmethod
    def launch(self, job: Job, limits: Limits) -> subprocess.Popen[bytes]: ...

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill the launcher's process group; the backends make their descendants die with it."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    def _popen(self, argv: Sequence[str], job: Job) -> subprocess.Popen[bytes]:
        log = job.log.open("ab")
        try:
            return subprocess.Popen(
                list(argv),
                env=_launcher_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                close_fds=True,
                start_new_session=True,
                cwd="/",
            )
        finally:
            log.close()


def _root_owned_executable(candidates: Sequence[str]) -> Path | None:
    """The first candidate that is a root-owned, not group/world-writable file (never from
    ``$PATH``, which a project could influence)."""
    for c in candidates:
        path = Path(c)
        try:
            st = path.stat()
        except OSError:
            continue
        if (
            st.st_uid == 0
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            and os.access(path, os.X_OK)
        ):
            return path
    return None


class Bubblewrap(Backend):
    """bubblewrap: every namespace unshared, a read-only view of the system, a private /tmp."""

    name = "bwrap"

    def __init__(self) -> None:
        self.path = _root_owned_executable(("/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"))
        self.with_proc = True

    def problem(self) -> str | None:
        if sys.platform != "linux":
            return "bubblewrap is Linux-only"
        if self.path is None:
            return "no root-owned bwrap in /usr/bin, /usr/local/bin or /bin (install bubblewrap)"
        return None

    def argv(self, job: Job, limits: Limits) -> list[str]:
        assert self.path is not None
        argv = [
            str(self.path),
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
        ]
        if job.network:
            argv.append("--share-net")
        # /tmp first: the paths bound below may live under it.
        argv += ["--size", str(limits.tmp_bytes), "--tmpfs", "/tmp", "--dev", "/dev"]
        if self.with_proc:
            argv += ["--proc", "/proc"]
        for path in _readable_paths(job):
            if path.is_symlink() and str(path) in SYSTEM_DIRS:
                argv += ["--symlink", os.readlink(path), str(path)]
            else:
                argv += ["--ro-bind", str(path), str(path)]
        argv += ["--bind", str(job.writable), str(job.writable)]
        for path in job.also_writable:
            argv += ["--bind", str(path), str(path)]
        argv += ["--clearenv"]
        for key, value in job.env.items():
            argv += ["--setenv", key, value]
        argv += ["--chdir", str(job.cwd), "--", *job.argv]
        return argv

    def launch(self, job: Job, limits: Limits) -> subprocess.Popen[bytes]:
        return self._popen(self.argv(job, limits), job)


def _helper_spec(job: Job, limits: Limits) -> str:
    import json

    return json.dumps(
        {
            "argv": list(job.argv),
            "cwd": str(job.cwd),
            "writable": str(job.writable),
            "also_writable": [str(p) for p in job.also_writable],
            "readable": [str(p) for p in _readable_paths(job)],
            "devices": list(DEVICES),
            "env": dict(job.env),
            "tmp_bytes": limits.tmp_bytes,
            "network": job.network,
        }
    )


class Namespaces(Backend):
    """safepip's own helper: user, mount, pid, network, IPC and UTS namespaces, a tmpfs root
    with read-only binds, ``pivot_root``, no capabilities left at exec."""

    name = "userns"

    def problem(self) -> str | None:
        if sys.platform != "linux":
            return "Linux namespaces are Linux-only"
        if not USERNS_HELPER.is_file():
            return f"the helper {USERNS_HELPER} is missing"
        return None

    def launch(self, job: Job, limits: Limits) -> subprocess.Popen[bytes]:
        root = Path(tempfile.mkdtemp(prefix="root-", dir=job.writable.parent))
        argv = [
            sys.executable,
            "-I",
            "-S",
            "-B",
            str(USERNS_HELPER),
            str(root),
            _helper_spec(job, limits),
        ]
        proc = self._popen(argv, job)
        self._roots[proc.pid] = root
        return proc

    def __init__(self) -> None:
        self._roots: dict[int, Path] = {}

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        super().stop(proc)
        root = self._roots.pop(proc.pid, None)
        if root is not None:
            try:
                root.rmdir()
            except OSError:
                pass


class Landlock(Backend):
    """Landlock (files, TCP) plus a seccomp filter denying ``socket()``, under a subreaper that
    kills whatever the build leaves running. Works where namespaces are denied (default Docker)."""

    name = "landlock"

    def problem(self) -> str | None:
        if sys.platform != "linux":
            return "Landlock is Linux-only"
        if platform.machine() not in ("x86_64", "aarch64"):
            return f"no seccomp filter for {platform.machine()}"
        from safepip._landlock_helper import landlock_abi

        abi = landlock_abi()
        if abi < 1:
            return "the kernel has no Landlock (needs Linux 5.13+ with landlock in the LSM list)"
        return None

    def launch(self, job: Job, limits: Limits) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-I", "-S", "-B", str(LANDLOCK_HELPER), _helper_spec(job, limits)]
        return self._popen(argv, job)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """The supervisor kills the build's whole tree on SIGTERM (descendants that left the
        process group are only reachable through it); then its group is killed."""
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        super().stop(proc)


class SandboxExec(Backend):
    """macOS ``sandbox-exec``: not implemented; named so that choosing it fails closed."""

    name = "sandbox-exec"

    def problem(self) -> str | None:
        return (
            "sandbox-exec exists only on macOS"
            if sys.platform != "darwin"
            else "the sandbox-exec backend is not implemented yet"
        )

    def launch(self, job: Job, limits: Limits) -> subprocess.Popen[bytes]:
        raise SandboxUnavailable("sandbox-exec is not implemented")


class Unsandboxed(Backend):
    """No isolation at all: only with the explicit opt-out. Environment and limits still apply."""

    name = "none"

    def problem(self) -> str | None:
        return None

    def launch(self, job: Job, limits: Limits) -> subprocess.Popen[bytes]:
        log = job.log.open("ab")
        try:
            return subprocess.Popen(
                list(job.argv),
                env=dict(job.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                close_fds=True,
                start_new_session=True,
                cwd=job.cwd,
            )
        finally:
            log.close()


BACKEND_NAMES = ("bwrap", "userns", "landlock", "sandbox-exec")


def backends() -> list[Backend]:
    """Every backend, in order of preference."""
    return [Bubblewrap(), Namespaces(), Landlock(), SandboxExec()]


def run(backend: Backend, job: Job, limits: Limits) -> Completed:
    """Run ``job`` to its end or to the wall-clock timeout; nothing it started survives."""
    proc = backend.launch(job, limits)
    timed_out = False
    try:
        proc.wait(timeout=limits.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        backend.stop(proc)
    return Completed(returncode=proc.returncode, timed_out=timed_out, backend=backend.name)


# --- self-test ---------------------------------------------------------------------------

_SELF_TEST = r"""
import os, socket, sys
port, canary, outside, rodir, parent, allowed = sys.argv[1:7]
bad = []
try:
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=2)
    s.sendall(b"x"); bad.append("reached a TCP listener on 127.0.0.1")
except OSError:
    pass
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b"x", ("127.0.0.1", int(port)))
except OSError:
    pass
try:
    open(canary).read(); bad.append("read a file outside the sandbox")
except OSError:
    pass
try:
    open(outside, "w").write("x")
except OSError:
    pass
try:
    open(os.path.join(rodir, "new"), "w").write("x"); bad.append("wrote to a read-only path")
except OSError:
    pass
if set(os.environ) - set(allowed.split(",")) - {"PWD", "LC_CTYPE"}:
    bad.append("saw variables it was not given")
try:
    open(f"/proc/{parent}/environ", "rb").read(); bad.append("read the caller's environment")
except OSError:
    pass
try:
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
except OSError:
    pids = []
if len(pids) > 8:
    bad.append(f"sees {len(pids)} processes")
open(os.path.join(os.environ["TMPDIR"], "ok"), "w").write("ok")
print("; ".join(bad) if bad else "sandbox-ok")
sys.exit(1 if bad else 0)
"""


class _Listener:
    """A TCP listener on 127.0.0.1 that records whether anything connected."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.05)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.setblocking(False)
        self.contacted = False
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.contacted = True
            conn.close()

    def close(self) -> None:
        try:
            self.udp.recv(16)
            self.contacted = True
        except OSError:
            pass
        self.udp.close()
        self._stop = True
        self.thread.join(timeout=2)
        self.sock.close()


def self_test(backend: Backend, timeout: float = 30.0) -> str | None:
    """Run a probe inside ``backend``: None if it holds, else what leaked."""
    problem = backend.problem()
    if problem:
        return problem
    with tempfile.TemporaryDirectory(prefix="safepip-selftest-") as tmp:
        base = Path(tmp)
        canary = base / "home" / ".ssh" / "id_rsa"
        canary.parent.mkdir(parents=True)
        canary.write_text("canary")
        work = base / "build"
        (work / "tmp").mkdir(parents=True)
        outside = base / "outside"
        rodir = base / "ro"
        rodir.mkdir()
        listener = _Listener()
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(work),
            "TMPDIR": str(work / "tmp"),
            "LANG": "C.UTF-8",
        }
        job = Job(
            argv=(
                sys.executable,
                "-I",
                "-S",
                "-c",
                _SELF_TEST,
                str(listener.port),
                str(canary),
                str(outside),
                str(rodir),
                str(os.getpid()),
                ",".join(env),
            ),
            cwd=work,
            writable=work,
            readable=(Path(sys.base_prefix), Path(sys.executable), rodir),
            env=env,
            log=base / "log",
        )
        try:
            done = run(backend, job, Limits(timeout=timeout))
        except OSError as exc:
            return f"cannot start: {exc}"
        finally:
            listener.close()
        output = (base / "log").read_text(errors="replace").strip()
        if listener.contacted:
            return "the probe reached a listener on 127.0.0.1"
        if outside.exists() or (rodir / "new").exists():
            return "the probe wrote outside its build directory"
        if done.timed_out:
            return "the probe did not finish"
        if done.returncode != 0 or "sandbox-ok" not in output:
            last = output.splitlines()[-1] if output else f"exit status {done.returncode}"
            return f"the probe failed: {last[:200]}"
        if not (work / "tmp" / "ok").is_file():
            return "the probe could not write to its build directory"
    return None


@dataclass
class _Cache:
    results: dict[str, str | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_CACHE = _Cache()


def _tested(backend: Backend) -> str | None:
    """The self-test result for ``backend``, run once per process."""
    with _CACHE.lock:
        if backend.name not in _CACHE.results:
            result = self_test(backend)
            if result is not None and isinstance(backend, Bubblewrap) and backend.problem() is None:
                # A masked /proc (some containers) makes --proc fail: try once without it.
                backend.with_proc = False
                if self_test(backend) is None:
                    result = None
                else:
                    backend.with_proc = True
            _CACHE.results[backend.name] = result
            if result is None and isinstance(backend, Bubblewrap):
                _CACHE.results["bwrap:proc"] = "yes" if backend.with_proc else None
        if isinstance(backend, Bubblewrap):
            backend.with_proc = _CACHE.results.get("bwrap:proc") == "yes"
        return _CACHE.results[backend.name]


NO_BACKEND_HINT = (
    "install bubblewrap (e.g. apt-get install bubblewrap), allow unprivileged user namespaces, "
    "use a kernel with Landlock, or install wheels only with --only-binary :all:; to build "
    "without any sandbox pass --unsafe-unsandboxed-build (build code then sees your files, "
    "secrets and network)"
)


def choose(only: Sequence[str] = ()) -> Choice:
    """The first backend (of ``only``, if given) whose self-test passes."""
    unknown = [n for n in only if n not in BACKEND_NAMES]
    if unknown:
        raise SandboxUnavailable(
            f"unknown sandbox backend {unknown[0]!r}",
            hint=f"choose from {', '.join(BACKEND_NAMES)}",
            reference="sandbox-backend",
        )
    rejected: list[tuple[str, str]] = []
    for backend in backends():
        if only and backend.name not in only:
            continue
        reason = _tested(backend)
        if reason is None:
            return Choice(backend=backend, rejected=tuple(rejected))
        rejected.append((backend.name, reason))
    raise SandboxUnavailable(
        "no sandbox works on this machine, so safepip will not run any build code",
        context=tuple(f"{name}: {why}" for name, why in rejected),
        hint=NO_BACKEND_HINT,
    )


def describe(only: Sequence[str] = ()) -> list[str]:
    """One line per backend: chosen, passed, or why not (``safepip debug sandbox``)."""
    lines: list[str] = []
    chosen: str | None = None
    for backend in backends():
        if only and backend.name not in only:
            lines.append(f"{backend.name}: not tried (not in the override list)")
            continue
        reason = _tested(backend)
        if reason is None and chosen is None:
            chosen = backend.name
            lines.append(f"{backend.name}: chosen (self-test passed)")
        elif reason is None:
            lines.append(f"{backend.name}: self-test passed (not needed: {chosen} comes first)")
        else:
            lines.append(f"{backend.name}: not used: {reason}")
    lines.append(f"sandbox: {chosen}" if chosen else "sandbox: none works; builds are refused")
    return lines


def remove_tree(path: Path) -> None:
    """Delete a build directory even if the build left it unwritable."""

    def fix(func: object, p: str, exc: object) -> None:
        try:
            os.chmod(p, 0o700)
            parent = os.path.dirname(p)
            os.chmod(parent, 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=fix)
