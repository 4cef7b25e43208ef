"""The recorded state of an editable install: a fingerprint of the project's build
configuration, written next to its ``direct_url.json`` after install, so that ``install -e .``
of an unchanged project is recognised as satisfied without building it again."""

from __future__ import annotations

import hashlib
import json
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

__all__ = [
    "STATE_FILE",
    "StaticProject",
    "editable_states",
    "fingerprint",
    "installed_unchanged",
    "satisfied_editable",
    "static_project",
]

STATE_FILE = "safepip-editable.json"
# Files whose content decides what an editable build produces (besides the sources it maps).
_CONFIG_FILES = ("pyproject.toml", "setup.cfg", "setup.py")
# Core metadata a backend may fill in (PEP 621 ``dynamic``) without changing what is installed.
_HARMLESS_DYNAMIC = frozenset(
    {"description", "readme", "license", "license-files", "authors", "maintainers"}
    | {"keywords", "classifiers", "urls"}
)


def fingerprint(project: Path) -> dict[str, object]:
    """The build configuration's content, and the top-level names a build maps (a new package
    needs a new build, as for pip)."""
    files = {}
    for name in _CONFIG_FILES:
        path = project / name
        files[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    entries = sorted(p.name for p in project.iterdir() if not p.name.startswith("."))
    src = project / "src"
    if src.is_dir():
        entries += sorted(f"src/{p.name}" for p in src.iterdir() if not p.name.startswith("."))
    return {"project": project.resolve().as_uri(), "files": files, "entries": entries}


def state_text(project: Path) -> str:
    return json.dumps(fingerprint(project), sort_keys=True) + "\n"


@dataclass(frozen=True, slots=True)
class StaticProject:
    """What a pyproject.toml declares statically, which no backend may change (PEP 621)."""

    name: NormalizedName
    version: Version
    dependencies: tuple[Requirement, ...]
    optional: Mapping[NormalizedName, tuple[Requirement, ...]]


def static_project(project: Path) -> StaticProject | None:
    """The project's static name, version and dependencies; ``None`` if any of them is left to
    the build backend."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    table = data.get("project")
    if not isinstance(table, dict):
        return None
    dynamic = set(table.get("dynamic") or ())
    if not dynamic <= _HARMLESS_DYNAMIC:
        return None
    optional = table.get("optional-dependencies") or {}
    return StaticProject(
        name=canonicalize_name(str(table["name"])),
        version=Version(str(table["version"])),
        dependencies=tuple(Requirement(str(r)) for r in table.get("dependencies") or ()),
        optional={
            canonicalize_name(str(k)): tuple(Requirement(str(r)) for r in v)
            for k, v in optional.items()
        },
    )


def installed_unchanged(
    project: Path, static: StaticProject, site_dirs: Sequence[str]
) -> Version | None:
    """The installed version when ``project`` is installed editable from this very directory
    (pip's ``direct_url.json``) and its build configuration is unchanged since safepip built it;
    else ``None``."""
    wanted = {"url": project.resolve().as_uri(), "dir_info": {"editable": True}}
    prefix = static.name.replace("-", "_")
    for site in dict.fromkeys(site_dirs):
        for info in Path(site).glob(f"{prefix}-*.dist-info"):
            try:
                direct = json.loads((info / "direct_url.json").read_text(encoding="utf-8"))
                state = (info / STATE_FILE).read_text(encoding="utf-8")
            except (OSError, ValueError):
                continue
            version = info.name.removesuffix(".dist-info").rpartition("-")[2]
            if direct == wanted and state == state_text(project) and _same(version, static):
                return static.version
    return None


def _same(version: str, static: StaticProject) -> bool:
    try:
        return Version(version) == static.version
    except ValueError:
        return False


def editable_states(records: Mapping[NormalizedName, Mapping[str, object]]) -> dict[str, str]:
    """The state to record for each editable directory among the ``direct_url.json`` records
    (taken after the build, so a change made meanwhile shows as a change next time)."""
    states: dict[str, str] = {}
    for name, record in records.items():
        url = record.get("url")
        if record.get("dir_info") == {"editable": True} and isinstance(url, str):
            parts = urllib.parse.urlsplit(url)
            if parts.scheme == "file":
                states[name] = state_text(Path(urllib.request.url2pathname(parts.path)))
    return states


def satisfied_editable(
    text: str, site_dirs: Sequence[str]
) -> tuple[NormalizedName, Version, list[Requirement]] | None:
    """For ``-e TEXT`` (a project directory, perhaps with ``[extras]``) already installed
    editable from there and unchanged: its name, version and the requirements it brings (the
    caller checks they are satisfied). ``None`` on any doubt: the full run decides."""
    path, _, extras_text = text.partition("[")
    if "://" in text or not path or (extras_text and not extras_text.endswith("]")):
        return None
    project = Path(path)
    if not (project / "pyproject.toml").is_file():
        return None
    static = static_project(project)
    if static is None:
        return None
    version = installed_unchanged(project, static, site_dirs)
    if version is None:
        return None
    extras = [canonicalize_name(e) for e in extras_text.rstrip("]").split(",") if e.strip()]
    if any(e not in static.optional for e in extras):
        return None
    requires = [*static.dependencies, *(r for e in extras for r in static.optional[e])]
    return static.name, version, requires
