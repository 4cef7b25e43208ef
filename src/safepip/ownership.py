"""Which installed distribution owns each file and command in the target: read from the RECORD
(or ``installed-files.txt``) and ``entry_points.txt`` of every distribution in its site
directories."""

from __future__ import annotations

import configparser
import csv
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from packaging.utils import NormalizedName, canonicalize_name

__all__ = ["InstalledFile", "Ownership", "entry_point_commands", "read_ownership"]

_MAX_LIST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class InstalledFile:
    """A file an installed distribution lists, with the RECORD hash it lists (if any)."""

    project: NormalizedName
    record_hash: str  # "sha256=..." or ""


@dataclass(frozen=True, slots=True)
class Ownership:
    """Installed files by absolute normalised path, and commands by name."""

    files: Mapping[str, InstalledFile] = field(default_factory=dict)
    commands: Mapping[str, NormalizedName] = field(default_factory=dict)
    projects: frozenset[NormalizedName] = frozenset()


def _project_of(meta_dir: str) -> NormalizedName:
    """The ``Name`` in the distribution's metadata, else the name its directory spells."""
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(meta_dir, filename), "rb") as f:
                head = f.read(16 * 1024).decode("utf-8", "replace")
        except OSError:
            continue
        for line in head.splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            if key.strip().lower() == "name" and value.strip():
                return canonicalize_name(value.strip())
    stem = os.path.basename(meta_dir).rsplit(".", 1)[0]
    return canonicalize_name(stem.split("-", 1)[0])


def _read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(_MAX_LIST_BYTES).decode("utf-8", "replace")
    except OSError:
        return None


def _record_files(meta_dir: str, site: str) -> Iterable[tuple[str, str]]:
    text = _read_text(os.path.join(meta_dir, "RECORD"))
    if text is not None:
        for row in csv.reader(io.StringIO(text)):
            if row and row[0]:
                yield os.path.normpath(os.path.join(site, row[0])), (row[1] if len(row) > 1 else "")
        return
    text = _read_text(os.path.join(meta_dir, "installed-files.txt"))
    if text is not None:
        for line in text.splitlines():
            if line.strip():
                yield os.path.normpath(os.path.join(meta_dir, line.strip())), ""


def entry_point_commands(text: str) -> list[str]:
    """Console and GUI script names declared in an ``entry_points.txt``."""
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except configparser.Error:
        return []
    return [
        name.strip()
        for group in ("console_scripts", "gui_scripts")
        if parser.has_section(group)
        for name in parser.options(group)
    ]


def read_ownership(site_dirs: Iterable[str], scripts_dir: str) -> Ownership:
    """Every file and command of the distributions installed directly in ``site_dirs``."""
    files: dict[str, InstalledFile] = {}
    commands: dict[str, NormalizedName] = {}
    projects: set[NormalizedName] = set()
    scripts = os.path.normpath(scripts_dir)
    for site in dict.fromkeys(os.path.normpath(s) for s in site_dirs if s):
        try:
            entries = sorted(os.scandir(site), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if not entry.name.endswith((".dist-info", ".egg-info")) or not entry.is_dir():
                continue
            project = _project_of(entry.path)
            projects.add(project)
            for path, record_hash in _record_files(entry.path, site):
                files.setdefault(path, InstalledFile(project, record_hash))
                if os.path.dirname(path) == scripts:
                    commands.setdefault(os.path.basename(path), project)
            text = _read_text(os.path.join(entry.path, "entry_points.txt"))
            for name in entry_point_commands(text or ""):
                commands.setdefault(name, project)
    return Ownership(files=files, commands=commands, projects=frozenset(projects))
