"""All or nothing around the hand-off: a pre-flight check of what pip would refuse, a rollback
journal of every file pip may replace or remove, pip in its own session, and the restore on any
failure or signal (or, after a run killed outright, at the start of the next run)."""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import BytesParser
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from safepip.errors import HandoffError, TargetError
from safepip.models import FileLink, VerifiedFile

if TYPE_CHECKING:  # annotations only: the no-op check imports this module and must start fast
    from safepip.config import Settings
    from safepip.report import Reporter
    from safepip.target import Target

__all__ = [
    "JOURNAL_DIR",
    "HandoffInterrupted",
    "InsufficientSpace",
    "TargetNotWritable",
    "UninstallImpossible",
    "guarded_handoff",
    "handoff_fds",
    "journal_pending",
    "recover_interrupted",
    "run_in_own_session",
    "start_in_own_session",
    "stop_session",
    "terminations_interrupt",
    "wait_in_own_session",
]

JOURNAL_DIR = ".safepip-journal"
_JOURNAL_FILE = "journal.json"
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_STOP_GRACE_SECONDS = 10.0
_SPACE_SLACK_BYTES = 16 * 1024 * 1024

# File descriptors the hand-off pip inherits: the journal lock, so that a pip orphaned by a killed
# safepip keeps the target locked until it exits, and the next run replays only after it.
_INHERITED_FDS: contextvars.ContextVar[tuple[int, ...]] = contextvars.ContextVar(
    "safepip_inherited_fds", default=()
)


class TargetNotWritable(TargetError):
    """pip would fail part-way: it cannot write or remove files in the target."""

    reference = "target-not-writable"


class InsufficientSpace(TargetError):
    """pip would run out of disk space part-way."""

    reference = "insufficient-space"


class UninstallImpossible(TargetError):
    """pip would refuse to replace an installed distribution it cannot uninstall."""

    reference = "cannot-uninstall"


class HandoffInterrupted(HandoffError):
    """A signal stopped the hand-off; the target was restored."""

    reference = "interrupted"


class _Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# ---------------------------------------------------------------------------------------------
# Where pip will write: the install scheme of the target, and each wheel's files within it.


@dataclass(frozen=True, slots=True)
class _Scheme:
    purelib: Path
    platlib: Path
    scripts: Path
    data: Path
    headers: Path
    home: Path  # where the journal lives (same file system as the files, for hard links)

    @property
    def anchors(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys((self.purelib, self.platlib, self.scripts, self.data)))


def _scheme(settings: Settings, target: Target) -> _Scheme | None:
    """The directories pip installs into, or None where safepip does not journal (--prefix,
    --root, --user: pip computes those schemes itself)."""
    if settings.prefix or settings.root or settings.user:
        return None
    if settings.target_dir:
        base = Path(settings.target_dir).absolute()
        return _Scheme(base, base, base / "bin", base, base / "include", base)
    major, minor = target.version[:2]
    prefix = Path(target.prefix)
    return _Scheme(
        purelib=Path(target.purelib),
        platlib=Path(target.platlib),
        scripts=Path(target.scripts),
        data=prefix,
        headers=prefix / "include" / "site" / f"python{major}.{minor}",
        home=Path(target.purelib),
    )


def _wheel_destinations(scheme: _Scheme, wheel: Path) -> tuple[list[str], int]:
    """Every path installing ``wheel`` writes (entry-point scripts included), and their size."""
    out: list[str] = []
    size = 0
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next((n.split("/")[0] for n in names if n.endswith(".dist-info/WHEEL")), "")
        root = str(scheme.purelib)
        if dist_info:
            wheel_meta = BytesParser().parsebytes(zf.read(f"{dist_info}/WHEEL"))
            if str(wheel_meta.get("Root-Is-Purelib", "true")).strip().lower() != "true":
                root = str(scheme.platlib)
        dirs = {
            "purelib": str(scheme.purelib),
            "platlib": str(scheme.platlib),
            "data": str(scheme.data),
            "scripts": str(scheme.scripts),
            "headers": str(scheme.headers),
        }
        for info in zf.infolist():
            if info.is_dir():
                continue
            size += info.file_size
            out.append(_destination(dirs, root, info.filename, dist_info))
        entry_points = f"{dist_info}/entry_points.txt"
        if entry_points in names:
            out += [_join(dirs["scripts"], s) for s in _script_names(zf.read(entry_points))]
        if dist_info:
            out += [
                _join(root, dist_info, n) for n in ("INSTALLER", "REQUESTED", "direct_url.json")
            ]
    return out, size


def _destination(dirs: Mapping[str, str], root: str, member: str, dist_info: str) -> str:
    first, _, rest = member.partition("/")
    if first.endswith(".data") and rest:
        kind, _, inner = rest.partition("/")
        if kind == "scripts":
            name = ([p for p in inner.split("/") if p and p != "."] or [""])[-1]
            return _join(dirs["scripts"], name)  # Path(inner).name
        if kind == "headers":
            return _join(dirs["headers"], dist_info.split("-")[0], inner)
        return _join(dirs[kind] if kind in ("purelib", "platlib", "data") else root, inner)
    return _join(root, member)


def _join(base: str, *relative: str) -> str:
    """``str(Path(base, *relative))`` for an absolute ``base`` without a Path per file (a plan has
    thousands): empty and ``.`` components dropped and an absolute part starting over, as in
    pathlib (the wheel gate has refused such members already)."""
    parts: list[str] = []
    for rel in relative:
        if rel.startswith("/"):
            base, parts = "/", []
        parts += [p for p in rel.split("/") if p and p != "."]
    if not parts:
        return base
    return (base if base.endswith("/") else base + "/") + "/".join(parts)


def _script_names(entry_points: bytes) -> list[str]:
    names: list[str] = []
    section = ""
    for raw in entry_points.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section in ("console_scripts", "gui_scripts") and "=" in line:
            name = line.split("=", 1)[0].strip()
            if name and "/" not in name and name not in (".", ".."):
                names.append(name)
    return names


def _installed_files(dist_info: Path) -> list[Path] | None:
    """The files pip would remove to uninstall the distribution at ``dist_info`` (None: pip
    cannot uninstall it)."""
    record = dist_info / "RECORD"
    base = dist_info.parent
    lines: list[str]
    if record.is_file():
        lines = [line.split(",")[0] for line in record.read_text("utf-8", "replace").splitlines()]
    elif (dist_info / "installed-files.txt").is_file():
        lines = (dist_info / "installed-files.txt").read_text("utf-8", "replace").splitlines()
        base = dist_info
    else:
        return None
    files: list[Path] = []
    for rel in lines:
        rel = rel.strip().strip('"')
        if not rel:
            continue
        path = Path(os.path.normpath(base / rel))
        files.append(path)
        if path.suffix == ".py":
            cache = path.parent / "__pycache__"
            if cache.is_dir():
                files += sorted(cache.glob(f"{path.stem}.*.pyc"))
    return files


# ---------------------------------------------------------------------------------------------
# The plan of the journal: checked before pip runs, then written down.


@dataclass(slots=True)
class _Plan:
    """What pip may write and remove, as absolute path strings (thousands of them)."""

    scheme: _Scheme
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    bytes_needed: int = 0


def _plan(settings: Settings, target: Target, files: Sequence[VerifiedFile]) -> _Plan:
    scheme = _scheme(settings, target)
    assert scheme is not None
    plan = _Plan(scheme)
    replaced_dists = settings.target_dir is None and not settings.ignore_installed
    inside = [scheme.purelib.resolve(), scheme.platlib.resolve()]
    for vf in files:
        assert isinstance(vf.pin.source, FileLink)
        if not vf.pin.source.filename.endswith(".whl"):
            continue
        written, size = _wheel_destinations(scheme, vf.path)
        plan.written += written
        plan.bytes_needed += size
        installed = target.installed.get(canonicalize_name(vf.pin.name))
        if not replaced_dists or installed is None or not installed.location:
            continue
        dist_info = Path(installed.location)
        if dist_info.resolve().parent not in inside:
            continue  # outside the environment: pip leaves it alone
        removed = _installed_files(dist_info)
        if removed is None:
            raise UninstallImpossible(
                f"pip cannot replace {installed.name} {installed.version}: it was installed "
                "without a record of its files (by distutils or by hand)",
                hint=f"remove {dist_info} and the files it installed, or pass --ignore-installed",
            )
        plan.removed += map(str, removed)
    return plan


def _preflight(plan: _Plan) -> None:
    """Refuse now what pip would fail on part-way: unwritable places, too little space."""
    blocked: list[str] = []
    seen: set[str] = set()
    nearest: dict[str, str] = {}  # directory -> itself or its nearest existing ancestor
    # Files share directories: each distinct directory is looked at once.
    for directory in dict.fromkeys(map(_parent, [*plan.written, *plan.removed])):
        parent = _existing_ancestor(directory, nearest)
        if parent in seen:
            continue
        seen.add(parent)
        if not os.access(parent, os.W_OK | os.X_OK):
            blocked.append(parent)
    if blocked:
        raise TargetNotWritable(
            f"pip could not write to {blocked[0]}"
            + (f" (and {len(blocked) - 1} more)" if len(blocked) > 1 else ""),
            context=tuple(blocked[1:6]),
            hint="run as the owner of the environment, or fix its permissions",
        )
    home = plan.scheme.home
    while not home.exists() and home != home.parent:
        home = home.parent
    free = shutil.disk_usage(home).free
    needed = plan.bytes_needed + _SPACE_SLACK_BYTES
    if free < needed:
        raise InsufficientSpace(
            f"installing needs about {needed // (1024 * 1024)} MiB; {home} has "
            f"{free // (1024 * 1024)} MiB free",
            hint="free some disk space and try again",
        )


def _parent(path: str) -> str:
    """``str(Path(path).parent)`` for an absolute, normalised ``path``."""
    return path.rpartition("/")[0] or "/"


def _existing_ancestor(directory: str, nearest: dict[str, str]) -> str:
    """``directory`` if it exists, else its nearest existing ancestor (the root at the latest);
    ``nearest`` remembers every directory looked at, so each is looked at once."""
    chain: list[str] = []
    while directory not in nearest:
        parent = _parent(directory)
        if parent == directory or os.path.exists(directory):
            nearest[directory] = directory
            break
        chain.append(directory)
        directory = parent
    found = nearest[directory]
    nearest.update(dict.fromkeys(chain, found))
    return found


# ---------------------------------------------------------------------------------------------
# The journal on disk.


def _top_entries(anchors: Sequence[Path]) -> Callable[[str], str | None]:
    """For a path: the entry of the (deepest) anchor holding it, e.g. ``.../site-packages/pkg``
    for ``.../site-packages/pkg/mod.py``; None outside every anchor."""
    prefixes = [
        str(a) if str(a).endswith("/") else str(a) + "/"
        for a in sorted(anchors, key=lambda p: len(p.parts), reverse=True)
    ]

    def entry(path: str) -> str | None:
        for prefix in prefixes:
            if len(path) > len(prefix) and path.startswith(prefix):
                return prefix + path[len(prefix) :].partition("/")[0]
        return None

    return entry


def _listing(directory: Path) -> list[str]:
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        rel = os.path.relpath(dirpath, directory)
        out += [os.path.normpath(os.path.join(rel, n)) for n in (*dirnames, *filenames)]
    return out


class _Journal:
    """One transaction directory under the target's journal home."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.backups = directory / "files"

    @staticmethod
    def create(home: Path) -> _Journal:
        name = f"txn-{os.getpid()}-{time.time_ns()}"
        directory = home / JOURNAL_DIR / name
        (directory / "files").mkdir(parents=True)
        return _Journal(directory)

    def record(self, plan: _Plan) -> None:
        """Keep a link (or copy) of every file pip may replace or remove, and the listing of every
        directory it may write into, then write the journal (its presence arms the replay)."""
        scheme = plan.scheme
        anchors = [a for a in scheme.anchors if a.is_dir()]
        top_entry = _top_entries(anchors)
        touched: dict[str, list[str]] = {}
        absent: set[str] = set()  # top entries that do not exist: nothing below them does
        for path in dict.fromkeys(plan.written):
            entry = top_entry(path)
            if entry is None or entry in touched or entry in absent:
                continue
            if os.path.isdir(entry) and not os.path.islink(entry):
                touched[entry] = _listing(Path(entry))
            elif not os.path.lexists(entry):
                absent.add(entry)
        backups: list[tuple[str, str]] = []
        for number, path in enumerate(dict.fromkeys([*plan.written, *plan.removed])):
            if top_entry(path) in absent:
                continue
            if not (os.path.isfile(path) or os.path.islink(path)):
                continue
            kept = self.backups / str(number)
            _keep(Path(path), kept)
            backups.append((path, kept.name))
        journal = {
            "version": 1,
            "pid": os.getpid(),
            "anchors": {str(a): sorted(os.listdir(a)) for a in anchors},
            "touched": touched,
            "backups": backups,
        }
        tmp = self.directory / (_JOURNAL_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(journal, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / _JOURNAL_FILE)
        _fsync_dir(self.directory)

    def restore(self) -> None:
        """Put the target back as the journal found it. Idempotent: a restore cut short by a kill
        is finished by the next run."""
        path = self.directory / _JOURNAL_FILE
        if path.is_file():
            data = json.loads(path.read_text("utf-8"))
            _remove_new_entries(data["anchors"])
            _remove_new_files(data["touched"])
            for original, kept in data["backups"]:
                _put_back(self.backups / kept, Path(original))
        self.discard()

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / _JOURNAL_FILE).unlink()
        shutil.rmtree(self.directory, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.directory.parent.rmdir()  # the last transaction leaves no trace


def _keep(path: Path, kept: Path) -> None:
    """A hard link where possible (pip unlinks before it writes, so the old bytes survive), else
    a copy."""
    try:
        os.link(path, kept, follow_symlinks=False)
    except OSError:
        shutil.copy2(path, kept, follow_symlinks=False)


def _put_back(kept: Path, original: Path) -> None:
    if not (kept.is_file() or kept.is_symlink()):
        return
    original.parent.mkdir(parents=True, exist_ok=True)
    if original.is_dir() and not original.is_symlink():
        shutil.rmtree(original)
    with contextlib.suppress(OSError):
        if os.path.samestat(os.lstat(kept), os.lstat(original)):
            return  # untouched (renaming a file onto another link of itself does nothing)
    tmp = original.with_name(f".{original.name}.safepip-restore")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(kept, tmp, follow_symlinks=False)
    except OSError:
        shutil.copy2(kept, tmp, follow_symlinks=False)
    os.replace(tmp, original)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _remove_new_entries(anchors: Mapping[str, Sequence[str]]) -> None:
    for anchor, before in anchors.items():
        directory = Path(anchor)
        if not directory.is_dir():
            continue
        known = set(before) | {JOURNAL_DIR}
        for name in os.listdir(directory):
            if name not in known:
                _remove(directory / name)


def _remove_new_files(touched: Mapping[str, Sequence[str]]) -> None:
    for root, before in touched.items():
        directory = Path(root)
        if not directory.is_dir():
            continue
        known = set(before)
        for rel in sorted(_listing(directory), key=len, reverse=True):
            if rel not in known:
                _remove(directory / rel)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(home: Path, reporter: Reporter) -> Iterator[int]:
    """The target's lock: flock on the journal's home directory itself, so no lock file is left
    behind, and the kernel releases it when its holders die."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            reporter.info("Waiting for another installation into this environment to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def journal_pending(home: Path) -> bool:
    """Whether a run into ``home`` (site-packages, or --target) left a journal to replay."""
    return (home / JOURNAL_DIR).is_dir()


def _pending(home: Path) -> list[_Journal]:
    directory = home / JOURNAL_DIR
    if not directory.is_dir():
        return []
    return [_Journal(p) for p in sorted(directory.glob("txn-*")) if p.is_dir()]


# ---------------------------------------------------------------------------------------------
# Signals: pip runs in its own session; safepip turns signals into a restore.


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """While inside, SIGINT, SIGTERM and SIGHUP raise :class:`_Interrupted` in the main thread."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Interrupted(signum)

    with _signal_handlers(handler):
        yield


@contextlib.contextmanager
def _signals_deferred() -> Iterator[list[int]]:
    """While inside (a restore), signals are remembered, not acted on."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    with _signal_handlers(handler):
        yield received


@contextlib.contextmanager
def _signal_handlers(handler: Any, signals: Sequence[int] = _SIGNALS) -> Iterator[None]:
    previous: dict[int, Any] = {}
    try:
        for signum in signals:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        pass
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


@contextlib.contextmanager
def terminations_interrupt() -> Iterator[None]:
    """While inside (a whole run), SIGTERM and SIGHUP unwind like Ctrl-C: temporary files are
    removed and nothing is left half-written. The hand-off's own handlers take over inside it."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    with _signal_handlers(handler, (signal.SIGTERM, signal.SIGHUP)):
        yield


def run_in_own_session(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run pip in a session of its own (a Ctrl-C to the terminal reaches safepip, not pip); if
    safepip is interrupted, stop pip before the interruption goes on."""
    return wait_in_own_session(start_in_own_session(argv, env, pass_fds=handoff_fds()))


def start_in_own_session(
    argv: Sequence[str], env: Mapping[str, str], **popen: Any
) -> subprocess.Popen[bytes]:
    """Start a hand-off process in a session of its own (see :func:`run_in_own_session`)."""
    try:
        return subprocess.Popen(list(argv), env=dict(env), start_new_session=True, **popen)
    except OSError as exc:
        raise HandoffError(f"cannot run pip: {exc}") from None


def wait_in_own_session(proc: subprocess.Popen[bytes]) -> int:
    """Its exit status; if safepip is interrupted meanwhile, the process is stopped first."""
    try:
        return proc.wait()
    except BaseException:
        stop_session(proc)
        raise


def handoff_fds() -> tuple[int, ...]:
    """The descriptors the process that writes into the target must hold (the journal lock)."""
    return _INHERITED_FDS.get()


def stop_session(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started by :func:`start_in_own_session`, and all it started."""
    with _signals_deferred():
        for sig, grace in ((signal.SIGTERM, _STOP_GRACE_SECONDS), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue


# ---------------------------------------------------------------------------------------------
# The two entry points the pipeline calls.


def recover_interrupted(
    settings: Settings,
    target: Target,
    reporter: Reporter,
    reprobe: Callable[[], Target] | None = None,
) -> Target:
    """Replay the journal a killed run left in the target, before anything else; returns the
    target as it is afterwards (probed again if anything was restored)."""
    if settings.command != "install":
        return target
    scheme = _scheme(settings, target)
    if scheme is None or not _pending(scheme.home):
        return target
    with _locked(scheme.home, reporter), _signals_deferred():
        pending = _pending(scheme.home)
        for journal in pending:
            journal.restore()
    if pending:
        reporter.warning(
            "an earlier safepip run into this environment was killed during the installation; "
            "its changes were rolled back"
        )
        if reprobe is not None:
            return reprobe()
    return target


@contextlib.contextmanager
def guarded_handoff(
    settings: Settings, target: Target, files: Sequence[VerifiedFile], reporter: Reporter
) -> Iterator[None]:
    """Check, journal, run the body (the hand-off) and commit; on any failure or signal restore
    the target and raise."""
    scheme = _scheme(settings, target)
    if scheme is None:
        reporter.detail("no rollback journal for --prefix, --root or --user installs")
        yield
        return
    plan = _plan(settings, target, files)
    _preflight(plan)
    with _locked(scheme.home, reporter) as lock_fd, _signals_interrupt():
        journal: _Journal | None = None
        token = _INHERITED_FDS.set((lock_fd,))
        try:
            journal = _Journal.create(scheme.home)
            journal.record(plan)
            yield
            with _signals_deferred():
                journal.discard()  # committed: pip finished
        except _Interrupted as exc:
            _rollback(journal)
            name = signal.Signals(exc.signum).name
            raise HandoffInterrupted(
                f"interrupted by {name} during the installation; the environment was restored "
                "to its state before the run",
                hint="run the command again to install",
            ) from None
        except BaseException as exc:
            _rollback(journal)
            if isinstance(exc, HandoffError):
                exc.context = (
                    *exc.context,
                    "safepip restored the environment to its state before the run",
                )
            raise
        finally:
            _INHERITED_FDS.reset(token)


def _rollback(journal: _Journal | None) -> None:
    if journal is None:
        return
    with _signals_deferred():
        journal.restore()
