"""Frozen value types that cross stage boundaries."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.requirements import Requirement
from packaging.utils import NormalizedName
from packaging.version import Version

__all__ = [
    "AlreadyInstalled",
    "DirectReference",
    "FileLink",
    "Finding",
    "Hashes",
    "IndexSource",
    "InstalledDist",
    "Pin",
    "Plan",
    "ProjectPage",
    "UserRequirement",
    "VerifiedFile",
]


@dataclass(frozen=True, slots=True)
class Hashes:
    """Digests known for a file, as sorted ``(algorithm, hex digest)`` pairs.

    One algorithm may appear with several digests (``--hash`` given twice): any one of them
    may match."""

    pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str]) -> Hashes:
        return cls.from_pairs(mapping.items())

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Hashes:
        return cls(tuple(sorted({(a.lower(), d.lower()) for a, d in pairs})))

    def get(self, algorithm: str) -> str | None:
        for algo, digest in self.pairs:
            if algo == algorithm:
                return digest
        return None

    def allowed(self, algorithm: str) -> frozenset[str]:
        return frozenset(d for a, d in self.pairs if a == algorithm)

    @property
    def algorithms(self) -> frozenset[str]:
        return frozenset(a for a, _ in self.pairs)

    def __or__(self, other: Hashes) -> Hashes:
        return Hashes.from_pairs((*self.pairs, *other.pairs))

    def __bool__(self) -> bool:
        return bool(self.pairs)


@dataclass(frozen=True, slots=True)
class IndexSource:
    """One configured place to look for files: a Simple API index or a find-links location."""

    url: str
    kind: str = "index"  # "index" or "find-links"
    public: bool = False  # pip's default index, or a declared mirror of it
    # The name the user's policy gives this index (``[indexes.NAME]``), if any, and whether the
    # policy marks it internal (its projects are the user's own: gates for public projects,
    # such as typosquatting and unknown upload times, treat them as trusted).
    name: str | None = None
    internal: bool = False

    @property
    def display(self) -> str:
        from safepip.net import redact_url

        return redact_url(self.url)


@dataclass(frozen=True, slots=True)
class FileLink:
    """A file an index lists for a project."""

    filename: str
    url: str
    index_url: str
    hashes: Hashes = Hashes()
    requires_python: str | None = None
    yanked: bool = False
    yank_reason: str | None = None
    size: int | None = None
    upload_time: datetime.datetime | None = None
    # PEP 658/714: None when not advertised; a (possibly empty) Hashes when it is.
    metadata_hashes: Hashes | None = None
    # PEP 740: where the index serves this file's provenance object, when it says so.
    provenance_url: str | None = None

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")


@dataclass(frozen=True, slots=True)
class ProjectPage:
    """Every file one index lists for one project."""

    name: NormalizedName
    index_url: str
    files: tuple[FileLink, ...]
    status: str | None = None  # PEP 792 project status, when served
    status_reason: str | None = None
    tracks: tuple[str, ...] = ()  # PEP 708
    alternate_locations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DirectReference:
    """Where a requirement says its project comes from, instead of an index: a wheel or source
    archive (local or remote), a project directory (possibly editable), or a git URL.

    ``url`` never carries credentials; ``credentials_url`` keeps them (for fetching only)."""

    url: str
    kind: Literal["wheel", "archive", "directory", "vcs"]
    editable: bool = False
    subdirectory: str | None = None
    credentials_url: str | None = None
    commit_id: str | None = None  # the commit a VCS reference was checked out at
    named: bool = True  # False: the name is a guess until the project's metadata says it


@dataclass(frozen=True, slots=True)
class UserRequirement:
    """A requirement the user named, with where it came from and the hashes given for it."""

    requirement: Requirement
    comes_from: str
    hashes: Hashes = Hashes()
    constraint: bool = False
    direct: DirectReference | None = None

    @property
    def name(self) -> NormalizedName:
        from packaging.utils import canonicalize_name

        return canonicalize_name(self.requirement.name)

    def holds_in(self, environment: Mapping[str, str]) -> bool:
        """Whether it applies where the marker variables are ``environment`` (``extra`` among
        them): no marker, or one that holds. One that does not is no requirement there."""
        marker = self.requirement.marker
        return marker is None or marker.evaluate(dict(environment))


@dataclass(frozen=True, slots=True)
class InstalledDist:
    """A distribution already installed in the target."""

    name: NormalizedName
    version: Version
    requires: tuple[str, ...]
    requested: bool = False
    location: str = ""
    editable: bool = False


@dataclass(frozen=True, slots=True)
class AlreadyInstalled:
    """The installed distribution satisfies this pin: nothing to fetch."""

    dist: InstalledDist


@dataclass(frozen=True, slots=True)
class Pin:
    """One project at one version, chosen by the resolver."""

    name: NormalizedName
    version: Version
    source: FileLink | AlreadyInstalled
    requires: tuple[str, ...] = ()
    extras: frozenset[str] = frozenset()
    requested: bool = False
    expected_hashes: Hashes = Hashes()  # from --hash and constraint files
    metadata: bytes = b""  # the core metadata the resolver used
    direct: DirectReference | None = None  # the user named this pin's source

    @property
    def needs_install(self) -> bool:
        return isinstance(self.source, FileLink)


@dataclass(frozen=True, slots=True)
class Plan:
    """What the resolver chose, in a stable order."""

    pins: tuple[Pin, ...]

    def to_install(self) -> tuple[Pin, ...]:
        return tuple(p for p in self.pins if p.needs_install)


@dataclass(frozen=True, slots=True)
class VerifiedFile:
    """A file whose bytes match every hash known for it."""

    pin: Pin
    path: Path
    sha256: str


@dataclass(frozen=True, slots=True)
class Finding:
    """What a gate found about one project or file, and what it does about it.

    ``action`` is ``"refuse"`` (the run stops with exit 3 before pip runs), ``"warn"`` (shown,
    and listed in the report) or ``"report"`` (only listed in the report). ``rule`` is a stable
    kebab-case name of the rule that fired; ``hint`` says how to fix or opt out."""

    gate: str
    project: str
    message: str
    action: Literal["refuse", "warn", "report"]
    rule: str
    hint: str = ""
    details: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "gate": self.gate,
            "project": self.project,
            "action": self.action,
            "rule": self.rule,
            "message": self.message,
            **({"hint": self.hint} if self.hint else {}),
            **({"details": dict(self.details)} if self.details else {}),
        }
