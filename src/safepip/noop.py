"""The no-op fast path: an ``install`` the target environment already satisfies, recognised
without pip's parser, the network or pip.

It understands a strict subset of pip's syntax (plain options, requirement and constraint files
of ``name<spec> [; marker] [--hash=...]`` lines) and pip's configuration files with keys that
cannot change what gets installed where (constraints, which it checks, aside). Anything else, or
any doubt, returns ``None`` and the run goes the full way, which decides exactly as before."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = ["Satisfied", "already_satisfied", "install_arguments"]

_QUIET = ("-q", "-qq", "-qqq", "--quiet")
_VERBOSE = ("-v", "-vv", "-vvv", "--verbose")
# Options (and pip.conf keys / PIP_* variables) that change neither what is installed nor where.
_FLAGS = frozenset(
    {
        "--require-hashes",
        "--no-input",
        "--disable-pip-version-check",
        "--isolated",
        "--no-compile",
        "--compile",
        "--prefer-binary",
        "--no-warn-script-location",
        "--no-warn-conflicts",
        "--no-cache-dir",
        "--no-index",
    }
)
_VALUED = frozenset(
    {
        "--cache-dir",
        "--progress-bar",
        "--timeout",
        "--retries",
        "--cert",
        "--client-cert",
        "--proxy",
        "--only-binary",
        "--root-user-action",
        "--keyring-provider",
    }
)
_INDEXES = frozenset({"-i", "--index-url", "--extra-index-url", "-f", "--find-links"})
_CONSTRAINT = ("-c", "--constraint")
_CONFIG_KEYS = frozenset(
    {o.lstrip("-") for o in _FLAGS | _VALUED | _INDEXES if o.startswith("--")}
    | {"default-timeout", "no-index", "constraint"}
)
_ENV_ALLOWED = frozenset(
    {"PIP_CONFIG_FILE", "PIP_PYTHON"} | {"PIP_" + k.upper().replace("-", "_") for k in _CONFIG_KEYS}
)
_COMMENT = re.compile(r"(^|\s+)#.*$")
_HASH = re.compile(r"(sha256|sha384|sha512):[0-9a-fA-F]+")
_LOOPBACK = ("localhost", "127.", "::1", "[::1]")
_NONE: frozenset[str] = frozenset()

_PROBE = r"""
import sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
import json, os, platform, sysconfig
def fmt(v):
    s = "%d.%d.%d" % (v.major, v.minor, v.micro)
    if v.releaselevel != "final":
        s += v.releaselevel[0] + str(v.serial)
    return s
markers = {
    "implementation_name": sys.implementation.name,
    "implementation_version": fmt(sys.implementation.version),
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}
class Unusual(Exception):
    pass


def headers(path):
    # METADATA's header block as importlib.metadata reads it, for the plain case only.
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out = {}
    for line in text.splitlines():
        if not line:
            break
        if line[0] in " \t" or ":" not in line:
            raise Unusual(path)
        key, _, value = line.partition(":")
        out.setdefault(key.strip().lower(), []).append(value.strip())
    return out


def read_dists():
    # Every *.dist-info on sys.path, first one of a name wins (as importlib.metadata); anything
    # else (eggs, zips, a name twice in one directory) is left to importlib.metadata.
    dists = {}
    for entry in sys.path:
        if not os.path.isdir(entry):
            if os.path.exists(entry):
                raise Unusual(entry)
            continue
        here = set()
        for item in os.listdir(entry):
            if item.endswith(".egg-info") or item.endswith(".egg"):
                raise Unusual(item)
            if not item.endswith(".dist-info"):
                continue
            info = os.path.join(entry, item)
            meta = os.path.join(info, "METADATA")
            if not os.path.isfile(meta):
                continue
            fields = headers(meta)
            name = (fields.get("name") or [None])[0]
            if not name:
                continue
            if name.lower() in here:
                raise Unusual(name)
            here.add(name.lower())
            if name.lower() in dists:
                continue
            direct = os.path.join(info, "direct_url.json")
            has_direct = False
            if os.path.isfile(direct):
                with open(direct, encoding="utf-8") as f:
                    has_direct = bool(f.read())
            version = (fields.get("version") or [""])[0]
            dists[name.lower()] = [name, version, fields.get("requires-dist", []), has_direct]
    return dists


def read_dists_by_importlib():
    import importlib.metadata as md
    dists = {}
    for d in md.distributions():
        name = d.metadata["Name"]
        if not name or name.lower() in dists:
            continue
        direct = d.read_text("direct_url.json")
        dists[name.lower()] = [name, d.metadata["Version"] or "", d.requires or [], bool(direct)]
    return dists


try:
    dists = read_dists()
except Exception:
    dists = read_dists_by_importlib()
json.dump({
    "prefix": sys.prefix,
    "base_prefix": getattr(sys, "base_prefix", sys.prefix),
    "stdlib": sysconfig.get_paths().get("stdlib", ""),
    "purelib": sysconfig.get_paths().get("purelib", ""),
    "markers": markers,
    "dists": list(dists.values()),
}, sys.stdout)
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Satisfied:
    """The requested projects, each already installed at a version that satisfies it."""

    requested: tuple[tuple[NormalizedName, Version], ...]
    verbosity: int

    def messages(self) -> list[str]:
        return [f"Requirement already satisfied: {n}=={v}" for n, v in self.requested]


@dataclass(frozen=True, slots=True)
class _Line:
    requirement: Requirement
    hashes: tuple[str, ...]


@dataclass
class _Request:
    lines: list[_Line]
    constraints: list[_Line] = field(default_factory=list)
    python: str | None = None
    verbosity: int = 0
    require_hashes: bool = False
    editables: list[str] = field(default_factory=list)  # -e PATH: see editstate


class _NotSimple(Exception):
    """The request is outside the subset this module understands."""


def install_arguments(args: Sequence[str]) -> list[str] | None:
    """The arguments of an ``install`` command line, general options before the command
    included (``--python X install ...`` as pip allows); ``None`` for another command or a
    general option this module does not know."""
    valued = _VALUED | {"--python"}
    it = iter(enumerate(args))
    for i, arg in it:
        if arg == "install":
            return [*args[:i], *args[i + 1 :]]
        name, eq, _ = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in valued and not eq:
            if next(it, None) is None:
                return None
        elif not (
            name in valued or (name in _FLAGS and not eq) or arg in _QUIET or arg in _VERBOSE
        ):
            return None
    return None


def already_satisfied(args: Sequence[str], environ: Mapping[str, str]) -> Satisfied | None:
    """``Satisfied`` when ``install args`` would install nothing, else ``None`` (go the full way)."""
    try:
        request = _parse_args(args, environ)
        hashed = request.require_hashes or any(line.hashes for line in request.lines)
        if hashed and (request.editables or not all(map(_pinned_with_hash, request.lines))):
            raise _NotSimple()  # the full way explains what --require-hashes needs
        from safepip.target import find_interpreter

        python, explicit = find_interpreter(request.python, environ)
        if _surely_missing(Path(python), request.lines):
            return None  # a requested project is not installed: no need to run the target to know
        with _Probe(python) as probe:  # the target runs while the configuration is read
            for path in _check_environment(environ):
                request.constraints.extend(_read_constraint_file(path))
            from safepip.journal import journal_pending

            data = probe.result()
        if journal_pending(Path(str(data.get("purelib", "")))):
            raise _NotSimple()  # a killed run's rollback journal: the full way replays it first
        return _satisfied(request, data, explicit)
    except Exception:  # any doubt (errors included): the full way decides, and reports
        return None


# --- the command line and requirement files -------------------------------------------------


def _parse_args(args: Sequence[str], environ: Mapping[str, str]) -> _Request:
    request = _Request(lines=[], python=environ.get("PIP_PYTHON") or None)
    it = iter(args)
    for arg in it:
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if arg in _QUIET:
            request.verbosity -= 1 if arg == "--quiet" else len(arg) - 1
        elif arg in _VERBOSE:
            request.verbosity += 1 if arg == "--verbose" else len(arg) - 1
        elif name in _FLAGS and not eq:
            request.require_hashes |= name == "--require-hashes"
        elif name in _VALUED or name in _INDEXES or name in ("--python", "-r", "--requirement"):
            value = inline if eq else next(it, None)
            if value is None:
                raise _NotSimple()
            if name in _INDEXES:
                _check_secure(value)
            elif name == "--python":
                request.python = value
            elif name in ("-r", "--requirement"):
                request.lines.extend(_read_requirement_file(Path(value)))
        elif name in _CONSTRAINT:
            value = inline if eq else _value(next(it, None))
            request.constraints.extend(_read_constraint_file(Path(value)))
        elif arg.startswith("-c") and len(arg) > 2:
            request.constraints.extend(_read_constraint_file(Path(arg[2:])))
        elif name in ("-e", "--editable"):
            request.editables.append(inline if eq else _value(next(it, None)))
        elif arg.startswith("-r") and len(arg) > 2:
            request.lines.extend(_read_requirement_file(Path(arg[2:])))
        elif arg.startswith("-") or "/" in arg or arg.startswith("."):
            raise _NotSimple()
        else:
            request.lines.append(_Line(_requirement(arg), ()))
    if not request.lines and not request.editables:
        raise _NotSimple()
    return request


def _value(value: str | None) -> str:
    if value is None:
        raise _NotSimple()
    return value


def _requirement(text: str) -> Requirement:
    try:
        req = Requirement(text)
    except InvalidRequirement:
        raise _NotSimple() from None
    if req.url:
        raise _NotSimple()
    return req


def _logical_lines(text: str) -> Iterator[str]:
    pending = ""
    for raw in text.splitlines():
        line = _COMMENT.sub("", raw)
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line:
            yield line
    if pending.strip():
        yield pending.strip()


def _read_requirement_file(path: Path) -> list[_Line]:
    text = path.read_text(encoding="utf-8")
    if "${" in text:
        raise _NotSimple()  # environment variables: pip's parser expands them
    lines = []
    for line in _logical_lines(text):
        if line.startswith("-"):
            raise _NotSimple()  # options in the file: pip's parser gives them their scope
        spec, _, options = line.partition(" --")
        hashes: list[str] = []
        for option in ("--" + options).split() if options else ():
            if not option.startswith("--hash="):
                raise _NotSimple()
            digest = option.removeprefix("--hash=")
            if not _HASH.fullmatch(digest):
                raise _NotSimple()  # pip's parser says what is wrong with it
            hashes.append(digest)
        lines.append(_Line(_requirement(spec), tuple(hashes)))
    return lines


def _read_constraint_file(path: Path) -> list[_Line]:
    """A constraint file's lines: plain ``name<spec> [; marker]`` only (pip refuses extras in a
    constraint; hashes and URLs are left to the full way)."""
    lines = _read_requirement_file(path)
    if any(line.hashes or line.requirement.extras for line in lines):
        raise _NotSimple()
    return lines


def _check_secure(url: str) -> None:
    """Plain HTTP (but to loopback) is refused on the full way: leave it to say so."""
    parts = urllib.parse.urlsplit(url)
    if "://" not in url or parts.scheme in ("https", "file"):
        return
    host = (parts.hostname or "").lower()
    if parts.scheme == "http" and host.startswith(_LOOPBACK):
        return
    raise _NotSimple()


# --- configuration ----------------------------------------------------------------------------


def _check_environment(environ: Mapping[str, str]) -> list[Path]:
    """Raises ``_NotSimple`` for a variable or configuration key that could change what is
    installed or where; returns the constraint files configured (every one found, pip's
    overrides aside: a constraint more can only send the run the full way)."""
    constraints: list[Path] = []
    for key, value in environ.items():
        if key.startswith("PIP_") and key not in _ENV_ALLOWED:
            raise _NotSimple()
        if key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
            for url in value.split():
                _check_secure(url)
        if key == "PIP_CONSTRAINT":
            constraints += [Path(v) for v in value.split()]
    for path in _pip_config_files(environ):
        constraints += _check_config_file(path)
    from safepip.policyfile import load_policy

    load_policy(environ)  # a broken policy file is reported on the full way
    return constraints


def _pip_config_files(environ: Mapping[str, str]) -> list[Path]:
    """The files pip's own configuration loader reads, in its order: none at all when
    ``PIP_CONFIG_FILE`` is ``os.devnull``, as pip skips them all then."""
    files: list[Path] = []
    env_file = environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return files
    if env_file:
        files.append(Path(env_file))
    xdg_dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files += [Path(d, "pip", "pip.conf") for d in xdg_dirs.split(os.pathsep) if d]
    files.append(Path("/etc/pip.conf"))
    isolated = environ.get("PIP_ISOLATED", "").lower() in ("1", "true", "yes", "on")
    if not isolated and not (env_file and os.path.exists(env_file)):
        home = Path(environ.get("HOME") or Path.home())
        config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
        files += [config_home / "pip" / "pip.conf", home / ".pip" / "pip.conf"]
    files.append(Path(sys.prefix, "pip.conf"))
    return [f for f in files if f.is_file()]


def _check_config_file(path: Path) -> list[Path]:
    parser = configparser.RawConfigParser()
    parser.read(path, encoding="utf-8")
    constraints: list[Path] = []
    for section in ("global", "install"):
        if not parser.has_section(section):
            continue
        for key, value in parser.items(section):
            key = key.replace("_", "-")
            if key not in _CONFIG_KEYS:
                raise _NotSimple()
            if key in ("index-url", "extra-index-url", "find-links"):
                for url in value.split():
                    _check_secure(url)
            elif key == "constraint":
                constraints += [Path(v) for v in value.split()]
    return constraints


# --- the target -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Installed:
    version: Version
    requires: tuple[str, ...]
    direct: bool


def _satisfied(request: _Request, probe: Mapping[str, Any], explicit: bool) -> Satisfied | None:
    """Whether the probed target satisfies ``request`` (``explicit``: the user named it)."""
    own = {Path(sys.prefix).resolve(), Path(sys.exec_prefix).resolve()}
    if not explicit and Path(str(probe["prefix"])).resolve() in own:
        raise _NotSimple()  # refused on the full way: the target is safepip's own environment
    if (
        probe["prefix"] == probe["base_prefix"]
        and Path(probe["stdlib"], "EXTERNALLY-MANAGED").is_file()
    ):
        raise _NotSimple()  # refused on the full way, as pip refuses
    installed = _installed(probe["dists"])
    markers: dict[str, str] = dict(probe["markers"])
    requested: list[tuple[NormalizedName, Version]] = []
    pending: list[Requirement] = []
    for line in request.lines:
        req = line.requirement
        if req.marker is not None and not _holds(req.marker, markers, frozenset()):
            continue
        name = canonicalize_name(req.name)
        dist = installed.get(name)
        if dist is None:
            return None
        requested.append((name, dist.version))
        pending.append(req)
    for text in request.editables:
        from safepip.editstate import satisfied_editable

        editable = satisfied_editable(text, [str(probe.get("purelib", ""))])
        if editable is None:
            return None
        requested.append((editable[0], editable[1]))
        pending.extend(
            r for r in editable[2] if r.marker is None or _holds(r.marker, markers, _NONE)
        )
    closure = _satisfied_closure(pending, installed, markers)
    if closure is None or not _constraints_hold(request.constraints, closure, installed, markers):
        return None
    return Satisfied(requested=tuple(requested), verbosity=request.verbosity)


def _surely_missing(python: Path, lines: Sequence[_Line]) -> bool:
    """Whether a virtual environment's files alone show that a requested project (one without a
    marker) is not installed: it sees only its own site-packages, which has no metadata directory
    of that name and no ``.pth`` file that could add a place to look. Any doubt: ``False``."""
    root = python.parent.parent
    try:
        config = (root / "pyvenv.cfg").read_text(encoding="utf-8", errors="replace")
        sites = list(root.glob("lib*/python*/site-packages"))
        names = [entry for site in sites for entry in os.listdir(site)]
    except OSError:
        return False
    if not sites or re.search(r"(?mi)^\s*include-system-site-packages\s*=\s*true", config):
        return False
    if any(name.endswith(".pth") for name in names):
        return False
    present = {
        canonicalize_name(name.partition("-")[0])
        for name in names
        if name.endswith((".dist-info", ".egg-info", ".egg"))
    }
    return any(
        line.requirement.marker is None and canonicalize_name(line.requirement.name) not in present
        for line in lines
    )


def _pinned_with_hash(line: _Line) -> bool:
    specs = list(line.requirement.specifier)
    return (
        bool(line.hashes)
        and len(specs) == 1
        and specs[0].operator in ("==", "===")
        and "*" not in specs[0].version
    )


def _satisfied_closure(
    pending: list[Requirement],
    installed: Mapping[NormalizedName, _Installed],
    markers: Mapping[str, str],
) -> set[NormalizedName] | None:
    """The names of every requirement and every dependency of what satisfies it, when all are
    satisfied; else ``None``."""
    seen: set[tuple[NormalizedName, frozenset[str]]] = set()
    while pending:
        req = pending.pop()
        if req.url:
            return None
        name = canonicalize_name(req.name)
        dist = installed.get(name)
        if dist is None or dist.direct:
            return None
        if not req.specifier.contains(dist.version, prereleases=True):
            return None
        extras = frozenset(canonicalize_name(e) for e in req.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for text in dist.requires:
            dep = Requirement(text)
            if dep.marker is None or _holds(dep.marker, markers, extras):
                pending.append(dep)
    return {name for name, _ in seen}


def _constraints_hold(
    constraints: Sequence[_Line],
    closure: set[NormalizedName],
    installed: Mapping[NormalizedName, _Installed],
    markers: Mapping[str, str],
) -> bool:
    """Whether every installed project the request needs satisfies the constraints on it (pip
    would otherwise replace it with a version that does)."""
    for line in constraints:
        req = line.requirement
        name = canonicalize_name(req.name)
        if name not in closure or (
            req.marker is not None and not _holds(req.marker, markers, _NONE)
        ):
            continue
        if not req.specifier.contains(installed[name].version, prereleases=True):
            return False
    return True


def _holds(marker: Marker, markers: Mapping[str, str], extras: frozenset[str]) -> bool:
    return any(marker.evaluate({**markers, "extra": e}) for e in ("", *extras))


class _Probe:
    """The target's probe, started on entry so that it runs while safepip goes on; stopped on
    exit if its result was not asked for."""

    def __init__(self, python: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self._proc = subprocess.Popen(
            [python, "-E", "-c", _PROBE],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    def __enter__(self) -> _Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.returncode is None:
            self._proc.kill()
            self._proc.communicate()

    def result(self) -> dict[str, Any]:
        out, _ = self._proc.communicate(timeout=60)
        if self._proc.returncode != 0:
            raise _NotSimple()
        data = json.loads(out)
        if not isinstance(data, dict):
            raise _NotSimple()
        return data


def _installed(raw: object) -> dict[NormalizedName, _Installed]:
    out: dict[NormalizedName, _Installed] = {}
    if not isinstance(raw, list):
        raise _NotSimple()
    for name, version, requires, direct in raw:
        try:
            parsed = Version(str(version))
        except InvalidVersion:
            continue
        out[canonicalize_name(str(name))] = _Installed(
            parsed, tuple(str(r) for r in requires), bool(direct)
        )
    return out
