"""Build constraints: the pins (and hashes) that fix the build dependencies of sdists and source
trees, from pip's ``--build-constraint`` files and the companion file ``safepip lock`` writes
next to a lock; with hashes, every build dependency must be pinned by one and match it."""

from __future__ import annotations

import copy
import optparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from safepip.errors import PolicyRefusal, RequirementsError
from safepip.models import IndexSource, Pin, UserRequirement

if TYPE_CHECKING:
    from safepip.config import Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "BuildConstraints",
    "check_build_pins",
    "companion_files",
    "read_build_constraints",
]

COMPANION_HEADER = "# build dependencies: "


@dataclass(frozen=True, slots=True)
class BuildConstraints:
    """What constrains build dependencies: pins from the files, the indexes the files name, and
    whether they carry hashes (then every build dependency must be pinned with one)."""

    constraints: tuple[UserRequirement, ...] = ()
    sources: tuple[IndexSource, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def hashed(self) -> bool:
        return any(c.hashes for c in self.constraints)

    def add_sources(self, sources: Sequence[IndexSource]) -> tuple[IndexSource, ...]:
        """``sources`` and, after them, the indexes the constraint files name."""
        known = {s.url for s in sources}
        return (*sources, *(s for s in self.sources if s.url not in known))


def _companion_of_pylock(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return None  # reading the lock itself reports the problem
    tool = data.get("tool")
    table = tool.get("safepip") if isinstance(tool, dict) else None
    name = table.get("build-constraints") if isinstance(table, dict) else None
    return name if isinstance(name, str) else None


def _companion_of_requirements(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.startswith("#"):
                    return None
                if line.startswith(COMPANION_HEADER):
                    return line[len(COMPANION_HEADER) :].strip() or None
    except (OSError, UnicodeDecodeError):
        return None
    return None


def companion_files(settings: Settings) -> tuple[str, ...]:
    """The build-constraints files the locks being installed name (pylock.toml's
    ``tool.safepip.build-constraints``, a requirements lock's header), relative to each lock."""
    named = [(s.path, _companion_of_pylock(s.path)) for s in settings.locks]
    named += [(path, _companion_of_requirements(path)) for path, _ in settings.lock_environments]
    out = []
    for lock, name in named:
        if name is None:
            continue
        path = name if os.path.isabs(name) else os.path.join(os.path.dirname(lock), name)
        if not os.path.isfile(path):
            raise RequirementsError(
                f"{lock} pins its build dependencies in {path}, which is missing",
                hint="keep the lock's build-constraints file next to it, or regenerate both "
                "with `safepip lock`",
            )
        out.append(path)
    return tuple(out)


def _parse(path: str) -> tuple[tuple[UserRequirement, ...], tuple[str, ...]]:
    """A constraints file read with pip's own rules: its pins and the index URLs it names."""
    from safepip.pipparser import command_parser
    from safepip.reqs import read_requirements

    parser = command_parser("install", isolated=True)
    parser.defaults = copy.deepcopy(parser.defaults)
    # The indexes the file names (`safepip lock` names them all), else pip's default.
    options, _ = parser.parse_args(["--isolated", "-c", path])
    assert isinstance(options, optparse.Values)
    parsed = read_requirements(options, ())
    pins = tuple(c for c in parsed.constraints if c.direct is None)
    return pins, parsed.index_urls


def _is_public(url: str) -> bool:
    from pip._internal.models.index import PyPI

    return url.rstrip("/") == str(PyPI.simple_url).rstrip("/")


def read_build_constraints(settings: Settings) -> BuildConstraints:
    """``--build-constraint`` files and the companion files of the locks being installed."""
    files = (*settings.build_constraints, *companion_files(settings))
    constraints: list[UserRequirement] = []
    urls: dict[str, None] = {}
    for path in files:
        pins, named = _parse(path)
        constraints.extend(pins)
        urls.update(dict.fromkeys(named))
    return BuildConstraints(
        constraints=tuple(constraints),
        sources=tuple(IndexSource(url=u, public=_is_public(u)) for u in urls),
        files=files,
    )


def check_build_pins(pins: Sequence[Pin], constraints: BuildConstraints, where: str) -> None:
    """With hashed build constraints, a build dependency they do not pin is refused (its file
    could not be checked), before anything is downloaded."""
    if not constraints.hashed:
        return
    for pin in pins:
        if not pin.expected_hashes:
            raise PolicyRefusal(
                f"{pin.name}=={pin.version}, needed to build {where}, has no hash in the build "
                f"constraints ({', '.join(constraints.files)})",
                hint="regenerate the lock with `safepip lock` so that it pins every build "
                "dependency, or add it with --hash to the build-constraints file",
                reference="hash-missing",
            )
