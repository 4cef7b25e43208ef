"""The direct hand-off: verified wheels installed by pip's own wheel installer under the target
interpreter, several at a time, their bytecode compiled as pip compiles it.

pip's command line re-reads, re-resolves and re-hashes what safepip has already verified, then
compiles every file serially; for the plain case (new distributions into a virtual environment)
this runs the very function pip's ``install`` ends in, ``install_wheel``, for each wheel, so the
installed files, RECORD, INSTALLER, REQUESTED and entry-point scripts are pip's own, and the
``.pyc`` files and their RECORD rows are those pip's default compilation gives.

The installer starts while safepip still resolves, downloads and checks (:class:`StandbyInstaller`):
its start-up, and the compilation in memory of each wheel's modules as the wheel comes in, overlap
that work; nothing is written until the journal is in place and safepip says so. Anything outside
the plain case goes to pip's command line (:mod:`safepip.install`)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from safepip.bytecode import COMPILE_AND_RECORD
from safepip.errors import HandoffError
from safepip.models import FileLink

if TYPE_CHECKING:  # annotations only: cli imports this module to start the installer early
    from safepip.config import Settings
    from safepip.models import Pin, VerifiedFile
    from safepip.report import Reporter
    from safepip.target import Target

__all__ = [
    "DirectInstall",
    "StandbyInstaller",
    "applies",
    "install_directly",
    "may_apply",
    "standby_installer",
]

_CLOSE_GRACE_SECONDS = 5.0

# Runs under the target interpreter with safepip's pip importable (as ``pip --python`` runs it),
# started while safepip still loads, resolves, downloads and checks. It imports pip's installer and
# waits on its control socket (fd 0) for lines:
#   "S <json>"  start: {"compile", "log_level"}, with safepip's stderr attached (SCM_RIGHTS), which
#               becomes this process's own (until then it may be /dev/null: an installer started
#               before the run is known to need it says nothing); the workers are forked then, and
#               what the target holds is read;
#   "C <json>"  compile ahead: [{"name", "path"}] of verified wheels; each top-level module is
#               compiled in memory, for the path it will have; nothing is written anywhere;
#   "I <spec> <result>"  install, with the journal lock's descriptor attached (SCM_RIGHTS);
#   end of file: exit, having written nothing.
# Installing, the workers take the wheels longest first, each with install_wheel (pip's own), then
# write the .pyc of each installed module: from the code compiled ahead when the hash the installed
# RECORD gives that module (pip copies the wheel's row for a file it writes unchanged) is the hash
# of the very bytes compiled, else compiled there as compileall does.
_INSTALLER = (
    r"""
import sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
import json
start = json.loads(sys.argv[1])
sys.path.insert(0, start["pip_parent"])
import compileall, contextlib, csv, hashlib, importlib.machinery, importlib.util, io, logging
import marshal, multiprocessing, os, py_compile, socket, warnings, zipfile
from base64 import urlsafe_b64encode
from concurrent.futures import ProcessPoolExecutor, as_completed, wait
from importlib import _bootstrap_external
from pip._internal.locations import get_scheme
from pip._internal.metadata import FilesystemWheel, get_wheel_distribution
from pip._internal.operations.check import (
    PackageDetails, _create_whitelist, check_package_set, create_package_set_from_installed
)
from pip._internal.operations.install.wheel import install_wheel, wheel_root_is_purelib
from pip._internal.utils.wheel import parse_wheel
del sys.path[0]


class _Prefixed(logging.Formatter):
    def format(self, record):
        text = super().format(record)
        if record.levelno >= logging.ERROR:
            return "ERROR: " + text
        if record.levelno >= logging.WARNING:
            return "WARNING: " + text
        return text


def set_up_logging(level):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Prefixed("%(message)s"))
    handler.setLevel(level)
    logger = logging.getLogger("pip")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    # As pip sets it up: its vendored libraries speak only at -v (distlib's "changing mode").
    logging.getLogger("pip._vendor").setLevel("DEBUG" if level == "DEBUG" else "WARNING")


"""
    + COMPILE_AND_RECORD
    + r"""

MODE = getattr(py_compile, "_get_default_invalidation_mode", lambda: None)()
# Only a hash-based .pyc (SOURCE_DATE_EPOCH) needs the source's own hash.
TIMESTAMPED = MODE == py_compile.PycInvalidationMode.TIMESTAMP
AHEAD = MODE is not None and all(
    hasattr(_bootstrap_external, n) for n in ("_calc_mode", "_write_atomic")
)


def record_digest(data):
    return "sha256=" + urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def lib_dir_of(zf, name, scheme):
    info_dir, metadata = parse_wheel(zf, name)
    lib_dir = scheme.purelib if wheel_root_is_purelib(metadata) else scheme.platlib
    return info_dir, lib_dir


_OPENED = {}


def opened(path):
    # A wheel's central directory is read once per process, however many times the wheel is
    # read (compile-ahead chunks, then the install's own look at it).
    zf = _OPENED.get(path)
    if zf is None:
        zf = _OPENED[path] = zipfile.ZipFile(path)
    return zf


def wheel_plan(path, name):
    # The top-level .py members with the paths install_wheel gives them (the .data ones are
    # compiled after installing, as any module not compiled ahead), and where every file and
    # command of the wheel goes, to tell whether two wheels overlap.
    scheme = get_scheme(name, isolated=True)
    modules, out = [], set()
    zf = opened(path)
    info_dir, lib_dir = lib_dir_of(zf, name, scheme)
    data_dir = info_dir[: -len(".dist-info")] + ".data/"
    for m in zf.namelist():
        if m.startswith(data_dir):
            key, _, rest = m[len(data_dir):].partition("/")
            base = getattr(scheme, key, None) or key
            out.add(os.path.normpath(os.path.join(base, rest)))
            continue
        dest = os.path.normpath(os.path.join(lib_dir, m))
        out.add(dest)
        if m.endswith(".py"):
            modules.append((m, dest))
    try:
        text = zf.read(info_dir + "/entry_points.txt").decode("utf-8")
    except KeyError:
        text = ""
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section in ("console_scripts", "gui_scripts") and "=" in line:
            out.add(os.path.join(scheme.scripts, line.partition("=")[0].strip()))
    return modules, out


def compile_ahead(path, members):
    out = {}
    zf = opened(path)
    for member, dest in members:
        try:
            data = zf.read(member)
            loader = importlib.machinery.SourceFileLoader("<py_compile>", dest)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore")
                code = loader.source_to_code(data, dest)
            source_hash = b"" if TIMESTAMPED else importlib.util.source_hash(data)
            out[dest] = (record_digest(data), source_hash, marshal.dumps(code))
        except Exception:  # compiled after installing, where compileall reports it
            continue
    return out


def write_pyc(path, ahead):
    # py_compile's own steps, with the code compiled ahead from the very same bytes.
    _, source_hash, code = ahead
    cfile = importlib.util.cache_from_source(path)
    if os.path.islink(cfile) or (os.path.exists(cfile) and not os.path.isfile(cfile)):
        return compile_one(path)
    if TIMESTAMPED:
        st = os.stat(path)
        stamp = (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
        stamp += (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
        flags = 0
    else:
        stamp = source_hash
        flags = 0b11 if MODE == py_compile.PycInvalidationMode.CHECKED_HASH else 0b01
    data = importlib.util.MAGIC_NUMBER + flags.to_bytes(4, "little") + stamp + code
    try:
        with contextlib.suppress(FileExistsError):
            os.makedirs(os.path.dirname(cfile))
        mode = _bootstrap_external._calc_mode(path)
        _bootstrap_external._write_atomic(cfile, data, mode)
    except Exception:
        return compile_one(path)
    return True


def install_one(item, ahead):
    name, wheel = item["name"], item["path"]
    scheme = get_scheme(name, isolated=True)
    install_wheel(
        name,
        wheel,
        scheme=scheme,
        req_description=item["description"],
        pycompile=False,
        warn_script_location=item["warn_script_location"],
        requested=item["requested"],
    )
    if not item["compile"]:
        return 0, 0
    info_dir, lib_dir = lib_dir_of(opened(wheel), name, scheme)
    dist_info = os.path.join(lib_dir, info_dir)
    pycs, failed = [], 0
    for path, digest in sources_and_digests(dist_info).items():
        known = ahead.get(path)
        ok = write_pyc(path, known) if known and known[0] == digest else compile_one(path)
        if ok:
            pycs.append(importlib.util.cache_from_source(path))
        else:
            failed += 1
    add_to_record(dist_info, [p for p in pycs if os.path.exists(p)])
    return len(pycs), failed


def installed_now():
    try:
        return create_package_set_from_installed()[0]
    except Exception as exc:  # reported where pip reports it, when the check is made
        return exc


def conflicts_once_installed(before, items):
    # What pip's check will find once the new wheels are in, worked out as pip's install command
    # works it out before installing: the environment as it is, with each new wheel's own
    # metadata added (safepip sends here only names that are not installed). As pip, an error
    # is logged and the install goes on without the warning.
    try:
        if isinstance(before, Exception):
            raise before
        package_set = dict(before)
        names = set()
        for item in items:
            dist = get_wheel_distribution(FilesystemWheel(item["path"]), item["canonical"])
            deps = list(dist.iter_dependencies())
            package_set[dist.canonical_name] = PackageDetails(dist.version, deps)
            names.add(dist.canonical_name)
        whitelist = _create_whitelist(names, package_set)
        return package_set, check_package_set(
            package_set, should_ignore=lambda name: name not in whitelist
        )
    except Exception:
        logging.getLogger("pip").exception(
            "Error while checking for conflicts. Please file an issue on "
            "pip's issue tracker: https://github.com/pypa/pip/issues/new"
        )
        return None


def warn_about_conflicts(details):
    _, (missing, conflicting) = details
    if missing or conflicting:
        from pip._internal.commands.install import InstallCommand
        InstallCommand._warn_about_conflicts(None, details, "resolvelib")


def fork_workers():
    workers = max(1, min(os.cpu_count() or 1, 8))
    if workers == 1 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    pool.submit(int).result()  # every worker forked now, before any file is written
    return pool


class Standby:
    def __init__(self, pool):
        self.pool = pool
        self.before = None  # what the target holds, read once the run is known
        self.plans = {}  # wheel path -> (modules, destinations)
        self.ahead = {}  # wheel path -> futures of its modules compiled ahead

    def configure(self, spec, fds):
        if len(fds) == 1:  # safepip's stderr: pip's messages and errors go where safepip's do
            os.dup2(fds[0], 2)
            os.close(fds[0])
        start.update(spec)
        set_up_logging(start["log_level"])
        if self.pool is None:
            self.pool = fork_workers()
        self.before = installed_now()  # while safepip still works: not at the end

    def plan(self, item):
        path = item["path"]
        if path not in self.plans:
            try:
                self.plans[path] = wheel_plan(path, item["name"])
            except Exception:  # install_wheel says what is wrong with it
                self.plans[path] = [], {path}
        return self.plans[path]

    def compile_ahead(self, wheels):
        if self.pool is None or not start["compile"] or not AHEAD:
            return
        # The wheels with the most modules first: their installs are the longest.
        for item in sorted(wheels, key=lambda w: -len(self.plan(w)[0])):
            path = item["path"]
            if path in self.ahead:
                continue
            modules = self.plan(item)[0]
            self.ahead[path] = [
                self.pool.submit(compile_ahead, path, modules[i:i + 16])
                for i in range(0, len(modules), 16)
            ]

    def compiled(self, path):
        out = {}
        for future in self.ahead.get(path, ()):
            if future.done() and not future.cancelled() and future.exception() is None:
                out.update(future.result())
        return out

    def overlapping(self, items):
        seen = set()
        for item in items:
            mine = self.plan(item)[1]
            if seen & mine:
                return True
            seen |= mine
        return False

    def cost(self, item, compiled):
        # Writing a file takes about a fourth of compiling a module, on most machines.
        modules, destinations = self.plan(item)
        return len(destinations) + 4 * sum(1 for _, dest in modules if dest not in compiled)

    def install(self, spec):
        items = [
            dict(w, compile=start["compile"], warn_script_location=spec["warn_script_location"])
            for w in spec["wheels"]
        ]
        counts = {}
        if self.pool is None:
            conflicts = self.conflicts(spec, items)
            for item in items:
                counts[item["path"]] = install_one(item, {})
            return counts, conflicts
        # What has not started is compiled while installing; what has (running, or already
        # handed to a worker) is waited for: it keeps the workers busy before any install can
        # start anyway, and its modules are then not compiled twice.
        started = [f for futures in self.ahead.values() for f in futures if not f.cancel()]
        wait(started)
        compiled = {item["path"]: self.compiled(item["path"]) for item in items}
        # Wheels that would write the same path go one after the other, in the order given (as
        # pip's command line); the others the longest first, so no long one is left for the end.
        serial = self.overlapping(items)
        if not serial:
            items.sort(key=lambda w: -self.cost(w, compiled[w["path"]]))
        running = {}
        for item in items:
            running[self.pool.submit(install_one, item, compiled[item["path"]])] = item
            if serial:
                counts[item["path"]] = next(iter(running)).result()
                running.clear()
        conflicts = self.conflicts(spec, items)  # while the workers install
        for future in as_completed(running):
            counts[running[future]["path"]] = future.result()  # a failure stops here: rollback
        return counts, conflicts

    def conflicts(self, spec, items):
        if not spec["warn_conflicts"]:
            return None
        return conflicts_once_installed(
            self.before if self.before is not None else installed_now(), items
        )


def read_messages(sock):
    buffer, fds = b"", []
    while True:
        data, ancillary, _, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(16 * 4))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                fds.extend(int.from_bytes(payload[i:i + 4], sys.byteorder)
                           for i in range(0, usable, 4))
        if not data:
            return
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode("utf-8"), fds


def serve(standby, sock):
    for line, fds in read_messages(sock):  # the journal lock stays held while this process runs
        kind, _, rest = line.partition(" ")
        if kind == "S":
            standby.configure(json.loads(rest), list(fds))
            fds.clear()
        elif kind == "C":
            standby.compile_ahead(json.loads(rest))
        elif kind == "I":
            spec_path, result_path = rest.split(" ", 1)
            with open(spec_path, encoding="utf-8") as f:
                spec = json.load(f)
            return install(standby, spec, result_path)
    return 0  # safepip stopped before installing: nothing was written


def install(standby, spec, result_path):
    try:
        counts, conflicts = standby.install(spec)
    except BaseException as exc:  # pip's refusal or anything else: one line, then the rollback
        if standby.pool is not None:
            standby.pool.shutdown(wait=True, cancel_futures=True)  # nothing written after this
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    if conflicts is not None:
        warn_about_conflicts(conflicts)
    result = {
        "installed": [[w["name"], w["version"]] for w in spec["wheels"]],
        "compiled": sum(c for c, _ in counts.values()),
        "failed": sum(f for _, f in counts.values()),
    }
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


def main():
    sock = socket.socket(fileno=0)
    standby = Standby(None)
    try:
        return serve(standby, sock)
    finally:
        if standby.pool is not None:
            standby.pool.shutdown(wait=True, cancel_futures=True)


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # the result is written; tearing pip's modules down decides nothing
"""
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectInstall:
    """What the direct hand-off installed (name, version) and how many files it compiled."""

    installed: tuple[tuple[str, str], ...]
    compiled: int
    failed: int


def applies(settings: Settings, target: Target, files: Sequence[VerifiedFile]) -> bool:
    """Whether the direct hand-off gives exactly what pip's command line would: new wheels
    (nothing to uninstall or replace) into a virtual environment's own scheme, with none of the
    options that change where or how pip installs."""
    if not files or not may_apply(settings, target):
        return False
    names = set()
    for vf in files:
        assert isinstance(vf.pin.source, FileLink)
        if vf.pin.direct is not None or not vf.pin.source.filename.endswith(".whl"):
            return False
        name = canonicalize_name(vf.pin.name)
        if name in target.installed or name in names:
            return False
        names.add(name)
    return True


def may_apply(settings: Settings, target: Target) -> bool:
    """What :func:`applies` asks of the run itself, known before any file is chosen."""
    if settings.command != "install" or settings.dry_run:
        return False
    if not target.is_virtualenv:
        return False
    if settings.target_dir or settings.prefix or settings.root or settings.user:
        return False
    if settings.platforms or settings.python_version or settings.implementation or settings.abis:
        return False
    if settings.force_reinstall or settings.ignore_installed or settings.exists_action:
        return False
    return not settings.log


def _log_level(verbosity: int) -> str:
    """pip's: -q shows warnings, -qq errors, -qqq only the critical; -v its debug messages."""
    if verbosity > 0:
        return "DEBUG"
    return {0: "INFO", -1: "WARNING", -2: "ERROR"}.get(verbosity, "CRITICAL")


def _pip_parent() -> str:
    import pip

    return str(Path(pip.__file__).resolve().parent.parent)


def _spec(settings: Settings, files: Sequence[VerifiedFile]) -> dict[str, object]:
    # As pip's command line: when no requirement was the user's own, every file is named.
    anyone_requested = any(vf.pin.requested for vf in files)
    return {
        "warn_script_location": not settings.no_warn_script_location,
        "warn_conflicts": not settings.no_warn_conflicts,
        "wheels": [
            {
                "name": vf.pin.name,
                "canonical": str(canonicalize_name(vf.pin.name)),
                "version": str(vf.pin.version),
                "path": str(vf.path),
                "description": f"{vf.pin.name}=={vf.pin.version}",
                "requested": vf.pin.requested or not anyone_requested,
            }
            for vf in files
        ],
    }


class StandbyInstaller:
    """pip's wheel installer under the target interpreter, started while safepip still loads,
    resolves, downloads and checks, so that its start-up and the compilation of the verified
    wheels' modules (in memory: nothing is written) overlap that work. It does nothing for a run
    until :meth:`configure` hands it the run's settings, and writes into the target only when
    :meth:`install` tells it to, inside the journal; closed without that, it just exits.

    Started ``early`` (before the run is known to need it, see :class:`InstallerAhead`), it
    says nothing until configured: a target it cannot run under fails silently, and the run
    then starts another installer or uses pip's command line."""

    def __init__(self, target_python: str, environ: Mapping[str, str], *, early: bool = False):
        from safepip.install import scrubbed_pip_env
        from safepip.journal import start_in_own_session

        self.python = target_python
        self._configured = False
        self._sending = threading.Lock()
        self._ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [target_python, "-c", _INSTALLER, json.dumps({"pip_parent": _pip_parent()})]
        try:
            # The same environment pip would run in: PYTHONPYCACHEPREFIX and SOURCE_DATE_EPOCH
            # count. A session of its own: a Ctrl-C reaches safepip, which stops it.
            self._proc: subprocess.Popen[bytes] | None = start_in_own_session(
                argv,
                scrubbed_pip_env(environ),
                stdin=theirs.fileno(),
                stderr=subprocess.DEVNULL if early else None,
            )
        finally:
            theirs.close()

    @property
    def alive(self) -> bool:
        """Whether it is still running (one started early may have failed to start)."""
        return self._proc is not None and self._proc.poll() is None

    def configure(self, settings: Settings) -> None:
        """Hand it the run's settings and safepip's stderr, which becomes its own; its workers
        are forked now and it reads what the target holds."""
        spec = {"compile": settings.compile, "log_level": _log_level(settings.verbosity)}
        self._configured = self._send(f"S {json.dumps(spec)}\n", (sys.stderr.fileno(),))

    def compile_ahead_of(self, pins: Sequence[Pin]) -> Callable[[FileLink, Path], None]:
        """A callback for :func:`safepip.fetch.download_all`: each wheel of ``pins``, once in,
        has its modules compiled in memory, ahead of the install."""
        names = {p.source.filename: p.name for p in pins if isinstance(p.source, FileLink)}

        def downloaded(link: FileLink, path: Path) -> None:
            name = names.get(link.filename)
            if name is not None and link.filename.endswith(".whl"):
                self._send(f"C {json.dumps([{'name': name, 'path': str(path)}])}\n", ())

        return downloaded

    def install(
        self, settings: Settings, files: Sequence[VerifiedFile], reporter: Reporter
    ) -> DirectInstall:
        """Install ``files`` (for which :func:`applies` holds) and compile them; raises
        :class:`HandoffError` when the installer fails (the journal then restores the target)."""
        from safepip.journal import handoff_fds, wait_in_own_session

        reporter.detail(
            "installing the verified wheels with pip's wheel installer, compiling meanwhile"
        )
        reporter.info("Installing collected packages: " + ", ".join(vf.pin.name for vf in files))
        proc = self._proc
        assert proc is not None, "install() once, before close()"
        with tempfile.TemporaryDirectory(prefix="safepip-install-") as tmp:
            spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
            spec_path.write_text(json.dumps(_spec(settings, files)), encoding="utf-8")
            # The journal lock goes with it: a killed safepip leaves the target locked until the
            # installer has exited, and the next run replays the journal only then.
            sent = self._send(f"I {spec_path} {result_path}\n", handoff_fds())
            code = wait_in_own_session(proc) if sent else proc.wait()
            self._proc = None
            try:
                data = json.loads(result_path.read_text(encoding="utf-8")) if code == 0 else None
            except (OSError, ValueError):
                data = None
        if data is None:
            raise HandoffError(
                f"pip's wheel installer exited with status {code} while installing the verified "
                "files",
                hint="its message above says why",
            )
        result = DirectInstall(
            installed=tuple((str(n), str(v)) for n, v in data["installed"]),
            compiled=int(data["compiled"]),
            failed=int(data["failed"]),
        )
        reporter.info("Successfully installed " + " ".join(f"{n}-{v}" for n, v in result.installed))
        return result

    def close(self) -> None:
        """Let it exit without installing (it has written nothing); stop it if it lingers, or at
        once if it was never configured (it has done nothing for this run)."""
        from safepip.journal import stop_session

        self._ours.close()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if not self._configured:
            stop_session(proc)
            return
        try:
            proc.wait(timeout=_CLOSE_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            stop_session(proc)

    def _send(self, line: str, fds: Sequence[int]) -> bool:
        try:
            with self._sending:  # lines come from the download threads too
                socket.send_fds(self._ours, [line.encode("utf-8")], list(fds))
        except OSError:  # it exited: the install then reports its status
            return False
        return True


# Options with which the direct hand-off cannot serve an install (see may_apply): with any of them
# on the command line, no installer is started ahead.
_NOT_DIRECT = frozenset(
    {
        "--dry-run",
        "-t",
        "--target",
        "--prefix",
        "--root",
        "--user",
        "--platform",
        "--python-version",
        "--implementation",
        "--abi",
        "--force-reinstall",
        "-I",
        "--ignore-installed",
        "--exists-action",
        "--log",
        "--log-file",
        "--local-log",
    }
)


class InstallerAhead:
    """pip's wheel installer for an ``install``, started before safepip has loaded and parsed the
    command line ``args``, as soon as the target's probe (:class:`safepip.target.ProbeAhead`)
    finds a virtual environment, and only when nothing in ``args`` rules the direct hand-off out.
    It is a guess: the run takes it only for the same interpreter, and
    :func:`standby_installer` uses it only if the hand-off may serve the run; it is stopped
    otherwise."""

    def __init__(self, args: Sequence[str], environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._wanted = hasattr(socket, "AF_UNIX") and not any(
            arg.partition("=")[0] in _NOT_DIRECT for arg in args
        )
        self._lock = threading.Lock()
        self._installer: StandbyInstaller | None = None

    def probed(self, target: Target) -> None:
        """Start the installer for ``target`` if it is a virtual environment (called from the
        probe's thread, before the run sees the probe's result)."""
        if not self._wanted or not target.is_virtualenv:
            return
        with self._lock:
            if self._installer is None:
                self._installer = StandbyInstaller(target.executable, self._environ, early=True)

    def take(self, executable: str) -> StandbyInstaller | None:
        """The installer started for ``executable``, still running; any other is stopped."""
        installer = self._release()
        if installer is not None and not (installer.python == executable and installer.alive):
            installer.close()
            return None
        return installer

    def close(self) -> None:
        """Stop an installer nobody took (and start none after this)."""
        installer = self._release()
        if installer is not None:
            installer.close()

    def _release(self) -> StandbyInstaller | None:
        """The installer started so far, no longer held here; none is started after this."""
        with self._lock:
            installer, self._installer, self._wanted = self._installer, None, False
        return installer


@contextlib.contextmanager
def standby_installer(
    settings: Settings,
    target: Target,
    environ: Mapping[str, str],
    early: InstallerAhead | None = None,
) -> Iterator[StandbyInstaller | None]:
    """A :class:`StandbyInstaller` for a run the direct hand-off may serve, else None: the one
    ``early`` started for the target, if it did."""
    started = early.take(target.executable) if early is not None else None
    if not may_apply(settings, target) or not hasattr(socket, "AF_UNIX"):
        if started is not None:
            started.close()
        yield None
        return
    standby = started or StandbyInstaller(target.executable, environ)
    try:
        standby.configure(settings)
        yield standby
    finally:
        standby.close()


def install_directly(
    settings: Settings,
    target_python: str,
    files: Sequence[VerifiedFile],
    environ: Mapping[str, str],
    reporter: Reporter,
    standby: StandbyInstaller | None = None,
) -> DirectInstall:
    """Install ``files`` (for which :func:`applies` holds) with ``standby``, or with an installer
    started now."""
    if standby is not None:
        return standby.install(settings, files, reporter)
    fresh = StandbyInstaller(target_python, environ)
    try:
        fresh.configure(settings)
        return fresh.install(settings, files, reporter)
    finally:
        fresh.close()
