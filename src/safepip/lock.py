"""Hash-pinned locks: pylock.toml (PEP 751) and hashed requirements files, written, read and
selected for one environment, and the require-hashes rules that hashed input turns on."""

from __future__ import annotations

import datetime
import os
import re
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from packaging.markers import InvalidMarker, Marker
from packaging.pylock import (
    Package,
    PackageArchive,
    PackageDirectory,
    PackageSdist,
    PackageVcs,
    PackageWheel,
    Pylock,
    PylockSelectError,
    PylockValidationError,
    is_valid_pylock_path,
)
from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from safepip.errors import PolicyRefusal, RequirementsError, ResolutionFailed, UsageError
from safepip.models import (
    AlreadyInstalled,
    DirectReference,
    FileLink,
    Hashes,
    IndexSource,
    InstalledDist,
    Pin,
    Plan,
    UserRequirement,
)
from safepip.net import is_secure_origin, redact_url, strip_credentials

if TYPE_CHECKING:
    from safepip.attest import Identity
    from safepip.config import Settings
    from safepip.resolve import DirectCandidate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ATTESTATION_COMMENT",
    "LockDocument",
    "LockFormat",
    "LockSource",
    "LockedDirect",
    "LockedPackage",
    "check_lock_constraints",
    "check_lock_input",
    "check_require_hashes",
    "environment_marker",
    "format_for_path",
    "is_pylock_path",
    "lock_sources",
    "locked_direct_requirements",
    "plan_from_locks",
    "read_existing_pins",
    "render",
    "render_requirements",
    "requirements_environments",
    "write_text_atomic",
]

LockFormat = Literal["pylock", "requirements"]
ENVIRONMENT_HEADER = "# environment: "
ATTESTATION_COMMENT = "# attestation: "  # a pinned publisher identity, as JSON, under its pin


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LockSource:
    """A pylock.toml given to ``install -r`` (or ``--group FILE:NAME``), with what to select."""

    path: str
    extras: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    default_groups: bool = True


@dataclass(frozen=True, slots=True)
class LockedDirect:
    """Where a direct reference's project comes from, fixed: a git repository at a full commit
    id, a local project directory, or an archive (a wheel or sdist) with its sha256."""

    kind: Literal["vcs", "directory", "archive"]
    url: str  # vcs: the repository (no ``git+``, no ref); else the file: or remote URL
    commit_id: str | None = None
    requested_revision: str | None = None
    subdirectory: str | None = None
    editable: bool = False
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class LockedPackage:
    """One project at one version in a lock, with every file of that version and its hashes
    (or, for a direct reference, the one source it is locked to)."""

    name: NormalizedName
    version: Version
    files: tuple[FileLink, ...]
    index: str | None = None
    marker: str | None = None  # None: every environment of the lock
    via: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    identity: Identity | None = None  # the publisher pinned by --pin-attestations (PEP 740)
    direct: LockedDirect | None = None


@dataclass(frozen=True, slots=True)
class LockDocument:
    """What a lock file says, independent of its format."""

    packages: tuple[LockedPackage, ...]
    environments: tuple[str, ...]
    command: str
    index_lines: tuple[str, ...] = ()  # requirements format: --index-url and friends
    title: str = "requirements"
    build_constraints: str | None = None  # the companion file pinning build dependencies
    base_dir: str = "."  # where the lock is written: local paths are recorded relative to it


# --- formats ---------------------------------------------------------------------------------


def is_pylock_path(path: str) -> bool:
    """``pylock.toml`` or ``pylock.NAME.toml`` (PEP 751 file names)."""
    return is_valid_pylock_path(Path(path))


def format_for_path(path: str, override: str | None) -> LockFormat:
    """The output format: ``--format`` if given, else from the file name."""
    if override is not None:
        if override in ("pylock", "pylock.toml"):
            return "pylock"
        if override in ("requirements", "requirements.txt", "txt"):
            return "requirements"
        raise UsageError(
            f"unknown lock format {override!r}", hint="--format takes pylock or requirements"
        )
    if path == "-" or is_pylock_path(path):
        return "pylock"
    if path.endswith((".txt", ".in")):
        return "requirements"
    if path.endswith(".toml"):
        raise UsageError(
            f"{path} is not a PEP 751 lock file name (pylock.toml or pylock.NAME.toml)",
            hint="name it pylock.toml or pylock.NAME.toml, or pass --format",
        )
    raise UsageError(
        f"cannot tell the lock format from the file name {path}",
        hint="use pylock.toml, pylock.NAME.toml or a .txt name, or pass --format",
    )


def environment_marker(markers: Mapping[str, str]) -> str:
    """A marker naming the environment a lock was resolved for."""
    parts = [
        f'python_version == "{markers.get("python_version", "")}"',
        f'sys_platform == "{markers.get("sys_platform", "")}"',
    ]
    if markers.get("platform_machine"):
        parts.append(f'platform_machine == "{markers["platform_machine"]}"')
    if markers.get("implementation_name"):
        parts.append(f'implementation_name == "{markers["implementation_name"]}"')
    return str(Marker(" and ".join(parts)))


def render(document: LockDocument, fmt: LockFormat) -> str:
    return render_pylock(document) if fmt == "pylock" else render_requirements(document)


def _local_path(url: str) -> Path | None:
    if not url.startswith("file:"):
        return None
    return Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))


def _relative(path: Path, base_dir: str) -> str:
    return Path(os.path.relpath(path, os.path.abspath(base_dir))).as_posix()


def _pylock_direct(package: LockedPackage, direct: LockedDirect, base_dir: str) -> Package:
    """PEP 751's entry for a direct reference, as pip's ``lock`` writes it: a source tree has no
    version; an archive keeps its own, which its hash fixes."""
    local = _local_path(direct.url)
    marker = Marker(package.marker) if package.marker else None
    if direct.kind == "vcs":
        assert direct.commit_id is not None
        vcs = PackageVcs(
            type="git",
            url=direct.url,
            requested_revision=direct.requested_revision,
            commit_id=direct.commit_id,
            subdirectory=direct.subdirectory,
        )
        return Package(name=package.name, marker=marker, vcs=vcs)
    if direct.kind == "directory":
        assert local is not None
        directory = PackageDirectory(
            path=_relative(local, base_dir),
            editable=True if direct.editable else None,
            subdirectory=direct.subdirectory,
        )
        return Package(name=package.name, marker=marker, directory=directory)
    assert direct.sha256 is not None
    archive = PackageArchive(
        url=None if local else direct.url,
        path=_relative(local, base_dir) if local else None,
        hashes={"sha256": direct.sha256},
        subdirectory=direct.subdirectory,
    )
    return Package(name=package.name, version=package.version, marker=marker, archive=archive)


def _file_url(link: FileLink) -> str:
    return strip_credentials(link.url.split("#", 1)[0])[0]


def _hashes_of(link: FileLink) -> dict[str, str]:
    sha256 = link.sha256
    assert sha256 is not None, f"{link.filename} has no sha256"
    return {"sha256": sha256}


def _upload_time(link: FileLink) -> datetime.datetime | None:
    if link.upload_time is None:
        return None
    return link.upload_time.astimezone(datetime.timezone.utc).replace(microsecond=0)


def _pylock_package(package: LockedPackage, base_dir: str) -> Package:
    if package.direct is not None:
        return _pylock_direct(package, package.direct, base_dir)
    wheels = [
        PackageWheel(
            name=f.filename,
            url=_file_url(f),
            size=f.size,
            upload_time=_upload_time(f),
            hashes=_hashes_of(f),
        )
        for f in package.files
        if f.is_wheel
    ]
    sdists = [f for f in package.files if not f.is_wheel]
    sdist = None
    if sdists:
        f = sdists[0]
        sdist = PackageSdist(
            name=f.filename,
            url=_file_url(f),
            size=f.size,
            upload_time=_upload_time(f),
            hashes=_hashes_of(f),
        )
    return Package(
        name=package.name,
        version=package.version,
        marker=Marker(package.marker) if package.marker else None,
        index=package.index,
        sdist=sdist,
        wheels=wheels or None,
        attestation_identities=[package.identity.as_dict()] if package.identity else None,
    )


def _tool_table(document: LockDocument) -> dict[str, str]:
    table = {"command": document.command}
    if document.build_constraints:
        table["build-constraints"] = document.build_constraints
    return table


def render_pylock(document: LockDocument) -> str:
    """PEP 751 TOML; the same document always gives the same bytes."""
    from pip._vendor import tomli_w  # pip's own TOML writer (pip is a runtime dependency)

    lock = Pylock(
        lock_version=Version("1.0"),
        environments=[Marker(e) for e in document.environments] or None,
        created_by="safepip",
        packages=[_pylock_package(p, document.base_dir) for p in document.packages],
        tool={"safepip": _tool_table(document)},
    )
    lock.validate()
    text: str = tomli_w.dumps(lock.to_dict())
    return text


def _direct_requirement_url(direct: LockedDirect) -> str:
    """``git+URL@COMMIT`` or the archive's URL, with pip's ``#subdirectory=`` fragment."""
    if direct.kind == "directory":
        raise UsageError(
            f"a requirements file cannot pin the directory {redact_url(direct.url)}: "
            "a directory has no hash to check",
            hint="lock into a pylock.toml (it records directories), or install the directory "
            "separately",
            reference="hash-unpinned",
        )
    url = f"git+{direct.url}@{direct.commit_id}" if direct.kind == "vcs" else direct.url
    return url + (f"#subdirectory={direct.subdirectory}" if direct.subdirectory else "")


def _requirement_head(package: LockedPackage) -> str:
    extras = f"[{','.join(package.extras)}]" if package.extras else ""
    if package.direct is not None:
        head = f"{package.name}{extras} @ {_direct_requirement_url(package.direct)}"
        return head + (f" ; {package.marker}" if package.marker else "")
    head = f"{package.name}{extras}=={package.version}"
    if package.marker:
        head += f" ; {package.marker}"
    return head


def render_requirements(document: LockDocument) -> str:
    """A pip-compile style hashed requirements file: header, index options, pins with every
    file's hash and ``# via`` annotations."""
    lines = [
        "#",
        f"# This {document.title} file is generated by safepip; do not edit it by hand.",
        "# To regenerate it, run:",
        "#",
        f"#    {document.command}",
        "#",
        *(ENVIRONMENT_HEADER + e for e in document.environments),
        *(
            [f"# build dependencies: {document.build_constraints}"]
            if document.build_constraints
            else []
        ),
        "#",
        *document.index_lines,
        *([""] if document.index_lines else []),
    ]
    for package in document.packages:
        hashes = sorted({f.sha256 for f in package.files if f.sha256})
        if package.direct is not None and package.direct.sha256:
            hashes = [package.direct.sha256]
        lines.append(_requirement_head(package) + (" \\" if hashes else ""))
        for i, digest in enumerate(hashes):
            tail = " \\" if i < len(hashes) - 1 else ""
            lines.append(f"    --hash=sha256:{digest}{tail}")
        if package.identity is not None:
            lines.append(f"    {ATTESTATION_COMMENT}{package.identity.to_json()}")
        if len(package.via) == 1:
            lines.append(f"    # via {package.via[0]}")
        elif package.via:
            lines.append("    # via")
            lines.extend(f"    #   {v}" for v in package.via)
    return "\n".join(lines) + "\n"


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (``-``: standard output) through a temporary file and a rename."""
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- reading ---------------------------------------------------------------------------------

_PIN_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def read_existing_pins(path: str) -> dict[NormalizedName, Version]:
    """The versions an existing lock output pins (for ``--upgrade-package``); empty if none."""
    if path == "-" or not os.path.isfile(path):
        return {}
    pins: dict[NormalizedName, Version] = {}
    if is_pylock_path(path) or path.endswith(".toml"):
        lock = read_pylock(path)
        for package in lock.packages:
            if package.version is not None and package.name not in pins:
                pins[package.name] = package.version
        return pins
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = _PIN_LINE.match(line.strip())
            if m:
                try:
                    pins.setdefault(canonicalize_name(m.group(1)), Version(m.group(2)))
                except ValueError:
                    continue
    return pins


def read_pylock(path: str) -> Pylock:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise RequirementsError(f"cannot read lock file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RequirementsError(f"lock file {path} is not valid TOML: {exc}") from None
    try:
        return Pylock.from_dict(data)
    except PylockValidationError as exc:
        raise RequirementsError(f"lock file {path} is not a valid PEP 751 lock: {exc}") from None


def requirements_environments(path: str) -> tuple[str, ...]:
    """The environments a hashed requirements file written by ``safepip lock`` was made for."""
    found: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.startswith("#"):
                    break
                if line.startswith(ENVIRONMENT_HEADER):
                    found.append(line[len(ENVIRONMENT_HEADER) :].strip())
    except (OSError, UnicodeDecodeError):
        return ()
    return tuple(found)


def describe_environment(markers: Mapping[str, str]) -> str:
    return (
        f"Python {markers.get('python_version', '?')} on {markers.get('sys_platform', '?')} "
        f"{markers.get('platform_machine', '')}".rstrip()
    )


def _parse_marker(where: str, text: str) -> Marker:
    try:
        return Marker(text)
    except InvalidMarker:
        raise RequirementsError(f"{where} has an invalid environment marker {text!r}") from None


def check_environments(where: str, environments: Sequence[str], markers: Mapping[str, str]) -> None:
    """Refuse, clearly, to install a lock on an environment it was not resolved for."""
    if not environments:
        return
    env = dict(markers)
    if any(_parse_marker(where, text).evaluate(env) for text in environments):
        return
    raise PolicyRefusal(
        f"{where} was locked for other environments than this one "
        f"({describe_environment(markers)})",
        context=tuple(f"locked for: {e}" for e in environments),
        hint="regenerate the lock for this environment, e.g. `safepip lock --python-version X "
        "--platform TAG`, or run it with the interpreter it was made for",
        reference="lock-environment-mismatch",
    )


# --- installing from a pylock.toml -----------------------------------------------------------


def _artifact_url(lock_path: str, path: str | None, url: str | None) -> str:
    if path is not None:
        full = path if os.path.isabs(path) else os.path.join(os.path.dirname(lock_path), path)
        return Path(full).resolve().as_uri()
    assert url is not None  # packaging's validation guarantees one of them
    return url


DirectArtifact = PackageVcs | PackageDirectory | PackageArchive


def _locked_reference(
    where: str, lock_path: str, package: Package, artifact: DirectArtifact
) -> tuple[DirectReference, Hashes]:
    """The direct reference a lock entry pins: git at its full commit id, a project directory
    (relative to the lock), or an archive with its hashes."""
    if isinstance(artifact, PackageVcs):
        from safepip.vcs import is_commit_id

        if artifact.type != "git":
            raise PolicyRefusal(
                f"{package.name} in {where} is a {artifact.type} entry; only git is supported",
                hint="lock a git repository, a wheel or a source archive of the project",
                reference="vcs-unsupported",
            )
        if not is_commit_id(artifact.commit_id):
            raise PolicyRefusal(
                f"{package.name} in {where} has commit-id {artifact.commit_id!r}, which is not "
                "a full commit id",
                hint="regenerate the lock with `safepip lock`",
                reference="hash-unpinned",
            )
        repo = _artifact_url(lock_path, artifact.path, artifact.url)
        url = f"git+{repo}@{artifact.commit_id.lower()}"
        return DirectReference(url=url, kind="vcs", subdirectory=artifact.subdirectory), Hashes()
    if isinstance(artifact, PackageDirectory):
        url = _artifact_url(lock_path, artifact.path, None)
        reference = DirectReference(
            url=url,
            kind="directory",
            editable=bool(artifact.editable),
            subdirectory=artifact.subdirectory,
        )
        return reference, Hashes()
    hashes = Hashes.from_mapping(artifact.hashes)
    url = _artifact_url(lock_path, artifact.path, artifact.url)
    if not is_secure_origin(url):
        raise PolicyRefusal(
            f"{package.name} in {where} is served over plain HTTP ({redact_url(url)})",
            hint="lock an HTTPS URL",
            reference="insecure-index",
        )
    kind: Literal["wheel", "archive"] = (
        "wheel" if urllib.parse.urlsplit(url).path.endswith(".whl") else "archive"
    )
    return DirectReference(url=url, kind=kind, subdirectory=artifact.subdirectory), hashes


def _pin_from_direct(
    where: str,
    lock_path: str,
    package: Package,
    artifact: DirectArtifact,
    direct: Mapping[NormalizedName, DirectCandidate],
) -> Pin:
    """The pin of a direct entry, from the candidate prepared for it (checked out at its commit,
    or read from its hash-checked archive)."""
    from safepip.resolve import parse_metadata

    _, hashes = _locked_reference(where, lock_path, package, artifact)
    candidate = direct[package.name]
    if package.version is not None and candidate.version != package.version:
        raise PolicyRefusal(
            f"{package.name} in {where} is locked at {package.version}, but its source is "
            f"version {candidate.version}",
            hint="regenerate the lock with `safepip lock`",
            reference="metadata-mismatch",
        )
    meta = parse_metadata(candidate.metadata, candidate.link.filename)
    return Pin(
        name=package.name,
        version=candidate.version,
        source=candidate.link,
        requires=meta.requires_dist,
        requested=True,
        expected_hashes=hashes,
        metadata=candidate.metadata,
        direct=candidate.reference,
    )


def _selected(
    source: LockSource, markers: Mapping[str, str], tags: Sequence[Tag]
) -> list[
    tuple[Package, PackageVcs | PackageDirectory | PackageArchive | PackageWheel | PackageSdist]
]:
    lock = read_pylock(source.path)
    where = source.path
    check_environments(where, [str(e) for e in lock.environments or ()], markers)
    groups = set(source.groups)
    if source.default_groups:
        groups.update(lock.default_groups or ())
    try:
        return list(
            lock.select(
                environment=dict(markers),  # type: ignore[arg-type]
                tags=list(tags),
                extras=source.extras,
                dependency_groups=groups,
            )
        )
    except PylockSelectError as exc:
        raise PolicyRefusal(
            f"{where} cannot be installed in this environment "
            f"({describe_environment(markers)}): {exc}",
            hint="regenerate the lock for this environment with `safepip lock`",
            reference="lock-environment-mismatch",
        ) from None


def locked_direct_requirements(
    sources: Sequence[LockSource], markers: Mapping[str, str], tags: Sequence[Tag]
) -> tuple[UserRequirement, ...]:
    """The direct references the locks pin for this environment (git at a commit, directories,
    archives with hashes), to be checked out or fetched and prepared before the plan is made."""
    out = []
    for source in sources:
        for package, artifact in _selected(source, markers, tags):
            if isinstance(artifact, (PackageVcs, PackageDirectory, PackageArchive)):
                reference, hashes = _locked_reference(source.path, source.path, package, artifact)
                out.append(
                    UserRequirement(
                        requirement=Requirement(f"{package.name} @ {reference.url}"),
                        comes_from=source.path,
                        hashes=hashes,
                        direct=reference,
                    )
                )
    return tuple(out)


def _pin_from_artifact(
    where: str,
    lock_path: str,
    package: Package,
    artifact: PackageWheel | PackageSdist,
) -> Pin:
    if package.version is None:
        raise RequirementsError(f"{package.name} in {where} has no version")
    # An sdist (no wheel fits this environment) is built in the sandbox like any other, its
    # build dependencies pinned by the lock's build constraints (safepip.buildconstraints).
    hashes = Hashes.from_mapping(artifact.hashes)
    url = _artifact_url(lock_path, artifact.path, artifact.url)
    if not is_secure_origin(url):
        raise PolicyRefusal(
            f"{package.name}=={package.version} in {where} is served over plain HTTP "
            f"({redact_url(url)})",
            hint="lock from an HTTPS index",
            reference="insecure-index",
        )
    link = FileLink(
        filename=artifact.filename,
        url=url,
        index_url=package.index or url,
        hashes=hashes,
        size=artifact.size,
        upload_time=artifact.upload_time,
    )
    return Pin(
        name=package.name,
        version=package.version,
        source=link,
        requested=True,
        expected_hashes=hashes,
    )


def lock_sources(sources: Sequence[LockSource]) -> tuple[IndexSource, ...]:
    """The indexes the locks record: the only ones asked while installing them (for the gates'
    project status and yanked checks; files come from the URLs the lock records)."""
    from pip._internal.models.index import PyPI

    urls: dict[str, None] = {}
    for source in sources:
        for package in read_pylock(source.path).packages:
            if package.index:
                urls.setdefault(strip_credentials(package.index)[0], None)
    return tuple(
        IndexSource(url=u, public=u.rstrip("/") == PyPI.simple_url.rstrip("/")) for u in urls
    )


def plan_from_locks(
    sources: Sequence[LockSource],
    markers: Mapping[str, str],
    tags: Sequence[Tag],
    installed: Mapping[NormalizedName, InstalledDist],
    *,
    reinstall: bool = False,
    direct: Sequence[DirectCandidate] = (),
) -> Plan:
    """Exactly what the locks pin for this environment, with no resolution (a direct entry is
    taken from the candidate prepared for it by ``locked_direct_requirements``)."""
    prepared = {d.name: d for d in direct}
    pins: dict[NormalizedName, Pin] = {}
    for source in sources:
        for package, artifact in _selected(source, markers, tags):
            if isinstance(artifact, (PackageVcs, PackageDirectory, PackageArchive)):
                pin = _pin_from_direct(source.path, source.path, package, artifact, prepared)
            else:
                pin = _pin_from_artifact(source.path, source.path, package, artifact)
            previous = pins.get(pin.name)
            if previous is not None and previous.version != pin.version:
                raise UsageError(
                    f"{pin.name} is locked at {previous.version} and {pin.version} "
                    "by the locks given",
                    hint="install one lock at a time",
                )
            pins[pin.name] = (
                pin if pin.direct is not None else _already_installed(pin, installed, reinstall)
            )
    return Plan(pins=tuple(pins[n] for n in sorted(pins)))


def check_lock_constraints(
    plan: Plan, constraints: Sequence[UserRequirement], markers: Mapping[str, str]
) -> None:
    """A lock's pins must meet the constraints that apply here (``-c``, ``PIP_CONSTRAINT``, a
    machine-wide pip.conf ``constraint``), as pip's resolver holds a pylock.toml's packages to
    them; a constraint on a project the lock does not pin changes nothing."""
    env = dict(markers, extra="")
    pins = {p.name: p for p in plan.pins}
    for c in constraints:
        if not c.holds_in(env):
            continue
        pin = pins.get(c.name)
        if pin is None:
            continue
        if c.direct is not None or not c.requirement.specifier.contains(
            pin.version, prereleases=True
        ):
            raise ResolutionFailed(
                f"the lock pins {pin.name} {pin.version}, which the constraint "
                f"{c.requirement} (from {c.comes_from}) excludes",
                hint="lock again under this constraint (safepip lock -c FILE), or install "
                "without it",
            )


def _already_installed(
    pin: Pin, installed: Mapping[NormalizedName, InstalledDist], reinstall: bool
) -> Pin:
    dist = installed.get(pin.name)
    if reinstall or dist is None or dist.version != pin.version or dist.editable:
        return pin
    return Pin(
        name=pin.name,
        version=pin.version,
        source=AlreadyInstalled(dist),
        requested=True,
        expected_hashes=pin.expected_hashes,
    )


# --- require-hashes --------------------------------------------------------------------------


def _is_exact_pin(requirement: Any) -> bool:
    spec = list(requirement.specifier)
    return len(spec) == 1 and spec[0].operator in ("==", "===") and "*" not in spec[0].version


def check_lock_input(settings: Settings, markers: Mapping[str, str]) -> None:
    """Before resolution: a pylock.toml is installed alone, and a lock made for other
    environments is refused with a message that says so."""
    if settings.locks and settings.command == "lock":
        raise UsageError(
            "`safepip lock` does not take a pylock.toml as input",
            hint="lock from the requirements the lock was made from (its tool.safepip.command)",
        )
    if settings.locks and settings.requirements:
        raise UsageError(
            "a pylock.toml installs exactly what it pins; it cannot be combined with other "
            "requirements",
            hint="install the lock alone, then the rest in a second command",
        )
    for path, environments in settings.lock_environments:
        check_environments(path, environments, markers)


def _hashes_required(settings: Settings) -> bool:
    if settings.require_hashes or settings.locks:
        return True
    trusted = settings.policy.section("hashes").get("require", False)
    project = settings.policy.project_section("hashes").get("require", False)
    return trusted is True or project is True


def check_direct_hash_mode(settings: Settings) -> None:
    """In hash-checking mode, refuse a direct reference that cannot be verified before anything
    is checked out or downloaded."""
    if not _hashes_required(settings):
        return
    from safepip.direct import hash_mode_refusal

    for r in settings.requirements:
        if r.direct is not None:
            refusal = hash_mode_refusal(r)
            if refusal is not None:
                raise refusal


def _fixed_source(settings: Settings, pin: Pin) -> bool:
    if pin.direct is None:
        return False
    return pin.direct.kind == "vcs" or (pin.direct.kind == "directory" and bool(settings.locks))


def check_require_hashes(settings: Settings, plan: Plan) -> None:
    """pip's ``--require-hashes`` (turned on by any ``--hash``, the option, a lock, or the
    policy's ``[hashes] require = true``), and more: a constraint's ``==`` pin and hashes count
    for the requirement it constrains, and every file to install must have hashes to match."""
    if not _hashes_required(settings):
        return
    pinned_by_constraint = {c.name for c in settings.constraints if _is_exact_pin(c.requirement)}
    for r in settings.requirements:
        if r.direct is not None:
            from safepip.direct import hash_mode_refusal

            refusal = hash_mode_refusal(r)
            if refusal is not None:
                raise refusal
            continue
        if not _is_exact_pin(r.requirement) and r.name not in pinned_by_constraint:
            raise PolicyRefusal(
                f"{r.requirement} ({r.comes_from}) is not pinned with ==, "
                "as --require-hashes requires",
                hint="pin every requirement to one version, e.g. with `safepip lock`",
                reference="hash-unpinned",
            )
    for pin in plan.to_install():
        # A git URL pinned to a full commit id counts as hashed (checked after checkout); a
        # project directory a pylock.toml records is installed from where it is, as pip does.
        if not pin.expected_hashes and not _fixed_source(settings, pin):
            raise PolicyRefusal(
                f"{pin.name}=={pin.version} has no --hash, as --require-hashes requires",
                hint="add its hashes to the requirements or constraints, e.g. with `safepip lock`",
                reference="hash-missing",
            )
