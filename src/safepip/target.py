"""The target environment: which interpreter ``pip`` would have meant, and what it holds."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import packaging
from packaging.tags import Tag
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from safepip.errors import PolicyRefusal, TargetError
from safepip.models import InstalledDist

__all__ = [
    "MIN_TARGET_PYTHON",
    "ProbeAhead",
    "Target",
    "find_interpreter",
    "probe_ahead",
    "probe_target",
]

MIN_TARGET_PYTHON = (3, 10)  # the oldest Python the hand-off pip supports

_PROBE = r"""
import sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
sys.path.insert(0, sys.argv[1])
import json, os, sysconfig, importlib.metadata as md
from packaging import tags, markers
dists = []
seen = set()
for d in md.distributions():
    name = d.metadata["Name"]
    if not name or name.lower() in seen:
        continue
    seen.add(name.lower())
    files = d.read_text("direct_url.json") or ""
    try:
        editable = bool(json.loads(files).get("dir_info", {}).get("editable")) if files else False
    except ValueError:
        editable = False
    dists.append({
        "name": name,
        "version": d.metadata["Version"] or "",
        "requires": d.requires or [],
        "requested": d.read_text("REQUESTED") is not None,
        "location": str(getattr(d, "_path", "")),
        "editable": editable,
    })
paths = sysconfig.get_paths()
json.dump({
    "executable": sys.executable,
    "version": list(sys.version_info[:3]),
    "prefix": sys.prefix,
    "base_prefix": getattr(sys, "base_prefix", sys.prefix),
    "tags": [str(t) for t in tags.sys_tags()],
    "markers": markers.default_environment(),
    "stdlib": paths.get("stdlib", ""),
    "purelib": paths.get("purelib", ""),
    "platlib": paths.get("platlib", ""),
    "scripts": paths.get("scripts", ""),
    "data": paths.get("data", ""),
    "include": paths.get("include", ""),
    "user_paths": sysconfig.get_paths(sysconfig.get_preferred_scheme("user")),
    "sys_path": sys.path[1:],
    "dists": dists,
}, sys.stdout)
"""


@dataclass(frozen=True, slots=True)
class Target:
    """What safepip knows of the target interpreter."""

    python: str
    executable: str
    version: tuple[int, int, int]
    prefix: str
    base_prefix: str
    tags: tuple[Tag, ...]
    markers: Mapping[str, str]
    stdlib: str
    purelib: str
    platlib: str
    scripts: str
    installed: Mapping[NormalizedName, InstalledDist]
    # The rest of the install scheme (for the wheel content gate), and the --user scheme.
    data: str = ""
    include: str = ""
    user_paths: Mapping[str, str] = field(default_factory=dict)

    @property
    def python_version(self) -> Version:
        return Version(".".join(map(str, self.version)))

    @property
    def is_virtualenv(self) -> bool:
        return self.prefix != self.base_prefix

    @property
    def externally_managed(self) -> bool:
        return not self.is_virtualenv and Path(self.stdlib, "EXTERNALLY-MANAGED").is_file()

    def externally_managed_message(self) -> str:
        marker = Path(self.stdlib, "EXTERNALLY-MANAGED")
        try:
            text = marker.read_text(errors="replace")
        except OSError:
            return ""
        for line in text.splitlines():
            if line.strip().lower().startswith("error"):
                return line.split("=", 1)[-1].strip()
        return ""


def _own_prefixes() -> tuple[Path, ...]:
    return tuple({Path(sys.prefix).resolve(), Path(sys.exec_prefix).resolve()})


def _interpreter_in(path: Path) -> str | None:
    for exe in ("bin/python", "bin/python3", "Scripts/python.exe"):
        candidate = path / exe
        if candidate.exists():
            return str(candidate)
    return None


def find_interpreter(python: str | None, environ: Mapping[str, str]) -> tuple[str, bool]:
    """The interpreter ``pip`` would have meant, and whether the user named it explicitly."""
    if python:
        path = Path(python)
        if path.is_dir():
            found = _interpreter_in(path.absolute())
            if found is None:
                raise TargetError(
                    f"no Python interpreter in {python}",
                    hint="--python takes a Python executable or a virtual environment directory",
                )
            return found, True
        if path.exists():
            return str(path.absolute()), True  # the probe runs in another working directory
        found_on_path = shutil.which(python)
        if found_on_path:
            return found_on_path, True
        raise TargetError(
            f"could not locate Python interpreter {python}",
            hint="--python takes a Python executable or a virtual environment directory",
        )
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        value = environ.get(var)
        if value:
            found = _interpreter_in(Path(value))
            if found is not None:
                return found, False
    own = _own_prefixes()
    for entry in environ.get("PATH", os.defpath).split(os.pathsep):
        if not entry:
            continue
        candidate = Path(entry, "python3")
        if not candidate.is_file() or not os.access(candidate, os.X_OK):
            continue
        resolved = Path(entry).resolve()
        if any(resolved == p or p in resolved.parents for p in own):
            continue
        return str(candidate), False
    raise TargetError(
        "no target Python found: no active virtual environment and no python3 on PATH",
        hint="activate a virtual environment or pass --python PATH",
    )


class ProbeAhead:
    """The probe of the interpreter a run will most likely target, started in the background
    while pip's options are parsed (that takes longer than the probe). It is used only by a
    ``probe_target`` of the same interpreter, and only once. ``then`` is called with the target
    it found (if it found one) before the probe's result is handed over."""

    def __init__(
        self,
        python: str,
        timeout: float = 60.0,
        then: Callable[[Target], None] | None = None,
    ) -> None:
        self.python = python
        self._result: Future[subprocess.CompletedProcess[bytes]] | None = Future()
        self._lock = threading.Lock()
        self._then = then
        threading.Thread(
            target=self._work, args=(self._result, timeout), name="safepip-probe", daemon=True
        ).start()

    def _work(self, fut: Future[subprocess.CompletedProcess[bytes]], timeout: float) -> None:
        try:
            proc = _run_probe(self.python, timeout)
        except BaseException as exc:
            fut.set_exception(exc)
            return
        if self._then is not None:
            with contextlib.suppress(Exception):  # probe_target reports what is wrong
                self._then(_target_from(self.python, proc))
        fut.set_result(proc)

    def take(self, python: str) -> Future[subprocess.CompletedProcess[bytes]] | None:
        with self._lock:
            if python != self.python or self._result is None:
                return None
            fut, self._result = self._result, None
            return fut


def probe_ahead(
    args: Sequence[str],
    environ: Mapping[str, str],
    then: Callable[[Target], None] | None = None,
) -> ProbeAhead | None:
    """Start probing the interpreter ``args`` most likely target (``--python``, ``PIP_PYTHON``,
    else the active environment); None when it cannot be told yet."""
    python: str | None = environ.get("PIP_PYTHON") or None
    for i, arg in enumerate(args):
        if arg == "--python" and i + 1 < len(args):
            python = args[i + 1]
        elif arg.startswith("--python="):
            python = arg.partition("=")[2]
    try:
        found, _ = find_interpreter(python, environ)
    except Exception:  # the pipeline finds it again, and reports what is wrong
        return None
    return ProbeAhead(found, then=then)


def _run_probe(python: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
    pkg_dir = Path(packaging.__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="safepip-probe-") as tmp:
        os.symlink(pkg_dir, Path(tmp, "packaging"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        try:
            return subprocess.run(
                [_runnable(python), "-E", "-c", _PROBE, tmp],
                capture_output=True,
                timeout=timeout,
                cwd=tmp,
                env=env,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise TargetError(f"cannot run the target interpreter {python}: {exc}") from None


def probe_target(
    python: str, *, explicit: bool, timeout: float = 60.0, ahead: ProbeAhead | None = None
) -> Target:
    """Run a small script under the target to learn its version, tags, markers and contents.

    The script imports only the standard library and safepip's own copy of ``packaging``
    (put first on ``sys.path`` through a private directory), never the target's."""
    early = ahead.take(python) if ahead is not None else None
    proc = early.result() if early is not None else _run_probe(python, timeout)
    target = _target_from(python, proc)
    if not explicit and Path(target.prefix).resolve() in _own_prefixes():
        raise PolicyRefusal(
            f"the target {python} is safepip's own environment",
            hint="activate the environment you mean, or pass --python PATH to name it",
            reference="target-is-safepip",
        )
    return target


def _target_from(python: str, proc: subprocess.CompletedProcess[bytes]) -> Target:
    """The target the probe of ``python`` describes; raises what is wrong with it."""
    if proc.returncode != 0:
        version_hint = _version_of(python)
        if version_hint is not None and version_hint < MIN_TARGET_PYTHON:
            raise _too_old(python, version_hint)
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise TargetError(f"cannot inspect the target interpreter {python}: {detail[0]}")
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise TargetError(f"the target interpreter {python} gave unreadable output") from None
    version = tuple(data["version"])
    if version[:2] < MIN_TARGET_PYTHON:
        raise _too_old(python, version[:2])
    return Target(
        python=python,
        executable=data["executable"],
        version=(version[0], version[1], version[2]),
        prefix=data["prefix"],
        base_prefix=data["base_prefix"],
        tags=tuple(Tag(*t.split("-")) for t in data["tags"]),
        markers=data["markers"],
        stdlib=data["stdlib"],
        purelib=data["purelib"],
        platlib=data["platlib"],
        scripts=data["scripts"],
        installed=_installed(data["dists"]),
        data=data.get("data", ""),
        include=data.get("include", ""),
        user_paths=data.get("user_paths", {}),
    )


def _runnable(python: str) -> str:
    """A path that still works from the probe's own working directory."""
    return str(Path(python).absolute()) if os.sep in python else python


def _too_old(python: str, version: tuple[int, ...]) -> TargetError:
    shown = ".".join(map(str, version))
    need = ".".join(map(str, MIN_TARGET_PYTHON))
    return TargetError(
        f"the target {python} is Python {shown}; the installer safepip hands off to needs {need}+",
        hint="use a newer interpreter for this environment",
        reference="target-too-old",
    )


def _version_of(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d %d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.split()
        return int(out[0]), int(out[1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _installed(raw: list[dict[str, object]]) -> dict[NormalizedName, InstalledDist]:
    out: dict[NormalizedName, InstalledDist] = {}
    for d in raw:
        try:
            version = Version(str(d["version"]))
        except InvalidVersion:
            continue
        name = canonicalize_name(str(d["name"]))
        requires = d.get("requires") or []
        out[name] = InstalledDist(
            name=name,
            version=version,
            requires=tuple(str(r) for r in requires) if isinstance(requires, list) else (),
            requested=bool(d.get("requested")),
            location=str(d.get("location", "")),
            editable=bool(d.get("editable")),
        )
    return out
