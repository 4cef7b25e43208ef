"""The ``lock`` command: resolve for each environment, hash every file of every chosen version,
pin the static build dependencies of every sdist, and write the lock deterministically."""

from __future__ import annotations

import dataclasses
import os
import shlex
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
)
from packaging.version import InvalidVersion, Version

from safepip.attestlock import pin_identities, pin_request
from safepip.buildsystem import static_build_requires, tree_build_requires
from safepip.config import Settings
from safepip.errors import ResolutionFailed, UsageError
from safepip.fetch import FileStore, MetadataFetcher, download, download_all
from safepip.gates import gate_lock
from safepip.lock import (
    LockDocument,
    LockedDirect,
    LockedPackage,
    LockFormat,
    environment_marker,
    format_for_path,
    read_existing_pins,
    render,
    write_text_atomic,
)
from safepip.models import FileLink, Hashes, IndexSource, Pin, Plan, UserRequirement
from safepip.net import redact_url
from safepip.report import Reporter
from safepip.resolve import (
    DirectCandidate,
    LinkSource,
    ResolveOptions,
    SdistBuilder,
    VersionTables,
    resolve,
    sdist_name_version,
    wheel_name_version_tags,
)
from safepip.sbom import write_sbom_if_asked
from safepip.vcs import is_commit_id, split_vcs_url
from safepip.verify import verify_wheel

__all__ = ["EnvironmentSpec", "LockOutcome", "LockRequest", "environment_options", "run_lock"]

_UPGRADE_FLAGS = {"--upgrade", "-U", "--accept-identity-change"}
_UPGRADE_VALUED = {"--upgrade-package", "-P"}


@dataclass(frozen=True, slots=True)
class EnvironmentSpec:
    """One environment to lock for: a Python version and platform tags (None: the target's)."""

    python_version: str | None = None
    platforms: tuple[str, ...] = ()

    @property
    def is_target(self) -> bool:
        return self.python_version is None and not self.platforms


@dataclass(frozen=True, slots=True)
class LockRequest:
    """What ``safepip lock`` was asked to do, from pip's options and safepip's own."""

    output: str
    format: LockFormat
    upgrade: bool
    upgrade_packages: frozenset[NormalizedName]
    environments: tuple[EnvironmentSpec, ...]
    build_constraints_output: str
    command: str

    @classmethod
    def from_settings(cls, settings: Settings) -> LockRequest:
        extra = settings.extra
        output = settings.output_file or "pylock.toml"
        formats = extra.get("--format", ())
        fmt = format_for_path(output, formats[-1] if formats else None)
        upgrade_names = [*extra.get("--upgrade-package", ()), *extra.get("-P", ())]
        return cls(
            output=output,
            format=fmt,
            upgrade=bool(extra.get("--upgrade") or extra.get("-U")),
            upgrade_packages=frozenset(
                canonicalize_name(n) for v in upgrade_names for n in v.split(",") if n.strip()
            ),
            environments=_environments(extra),
            build_constraints_output=_build_constraints_path(output, extra),
            command=_regenerate_command(settings.command_line),
        )


def _environments(extra: Mapping[str, Sequence[str]]) -> tuple[EnvironmentSpec, ...]:
    versions = extra.get("--python-version", ())
    platforms = tuple(extra.get("--platform", ()))
    main = EnvironmentSpec(versions[-1] if versions else None, platforms)
    others = [_parse_environment(text) for text in extra.get("--environment", ())]
    if others and main.is_target:
        return tuple(dict.fromkeys(others))
    return tuple(dict.fromkeys([main, *others]))


def _parse_environment(text: str) -> EnvironmentSpec:
    version, _, platforms = text.partition(":")
    version = version.strip()
    try:
        Version(version)
    except InvalidVersion:
        raise UsageError(
            f"--environment {text!r}: {version!r} is not a Python version",
            hint="use PYTHON_VERSION[:PLATFORM_TAG,...], e.g. 3.12:win_amd64",
        ) from None
    return EnvironmentSpec(version, tuple(p.strip() for p in platforms.split(",") if p.strip()))


def _build_constraints_path(output: str, extra: Mapping[str, Sequence[str]]) -> str:
    given = extra.get("--build-constraints-output", ())
    if given:
        return given[-1]
    if output == "-":
        return "build-constraints.txt"
    path = Path(output)
    stem = path.name.removesuffix(".toml").removesuffix(".txt")
    return str(path.with_name(f"{stem}.build-constraints.txt"))


def _regenerate_command(argv: Sequence[str]) -> str:
    """The command that regenerates the lock: the one given, without upgrade options and with
    credentials redacted."""
    kept: list[str] = []
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
            continue
        name = arg.partition("=")[0]
        if arg in _UPGRADE_FLAGS:
            continue
        if name in _UPGRADE_VALUED:
            skip_next = "=" not in arg
            continue
        kept.append(redact_url(arg) if "://" in arg else arg)
    return shlex.join(["safepip", "lock", *kept])


@dataclass(frozen=True, slots=True)
class LockOutcome:
    document: LockDocument
    text: str
    build_constraints: str | None


# --- environments ----------------------------------------------------------------------------


def _platform_markers(platform: str) -> dict[str, str]:
    """Marker values a platform tag implies (the rest stay the target's)."""
    if platform.startswith(("manylinux", "musllinux", "linux")):
        machine = platform.split("_", 2)[-1] if platform.startswith("linux") else None
        if machine is None:
            parts = platform.split("_")
            machine = "_".join(parts[3:]) if len(parts) > 3 else parts[-1]
        return {
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "platform_machine": machine,
        }
    if platform.startswith("macosx"):
        machine = platform.split("_", 3)[-1]
        machine = {"universal2": "arm64", "intel": "x86_64"}.get(machine, machine)
        return {
            "sys_platform": "darwin",
            "platform_system": "Darwin",
            "os_name": "posix",
            "platform_machine": machine,
        }
    if platform.startswith("win"):
        machine = {"win32": "x86", "win_amd64": "AMD64", "win_arm64": "ARM64"}.get(platform, "")
        return {
            "sys_platform": "win32",
            "platform_system": "Windows",
            "os_name": "nt",
            "platform_machine": machine,
        }
    raise UsageError(
        f"unknown platform tag {platform!r}",
        hint="use a wheel platform tag such as manylinux_2_28_x86_64, macosx_11_0_arm64 or win_amd64",
    )


def environment_options(base: ResolveOptions, spec: EnvironmentSpec) -> ResolveOptions:
    """The resolver's tags, markers and Python version for ``spec``."""
    if spec.is_target:
        return base
    from pip._internal.utils.compatibility_tags import get_supported

    markers = dict(base.markers)
    python_version = base.python_version
    if spec.python_version:
        parts = spec.python_version.split(".")
        python_version = Version(spec.python_version)
        markers["python_version"] = ".".join(parts[:2])
        markers["python_full_version"] = (
            spec.python_version if len(parts) > 2 else spec.python_version + ".0"
        )
    if spec.platforms:
        markers.update(_platform_markers(spec.platforms[0]))
        markers["platform_release"] = ""
        markers["platform_version"] = ""
    tags = get_supported(
        version="".join(markers["python_version"].split(".")[:2]),
        platforms=list(spec.platforms) or None,
    )
    # pip's tags are its vendored packaging's: rebuild them as ours, or they never compare equal.
    return dataclasses.replace(
        base,
        tags=tuple(Tag(t.interpreter, t.abi, t.platform) for t in tags),
        markers=markers,
        python_version=python_version,
    )


# --- resolution ------------------------------------------------------------------------------


def _existing_pin_constraints(
    request: LockRequest, requirements: Sequence[UserRequirement]
) -> list[UserRequirement]:
    """An existing output's pins, kept unless upgraded or no longer allowed by the input."""
    if request.upgrade:
        return []
    wanted: dict[NormalizedName, list[Requirement]] = {}
    for r in requirements:
        wanted.setdefault(r.name, []).append(r.requirement)
    kept = []
    for name, version in sorted(read_existing_pins(request.output).items()):
        if name in request.upgrade_packages:
            continue
        if any(
            not req.specifier.contains(version, prereleases=True) for req in wanted.get(name, [])
        ):
            continue
        kept.append(
            UserRequirement(
                requirement=Requirement(f"{name}=={version}"),
                comes_from=f"{request.output} (existing pin)",
                constraint=True,
            )
        )
    return kept


def _resolve_each(
    requirements: Sequence[UserRequirement],
    constraints: Sequence[UserRequirement],
    environments: Sequence[ResolveOptions],
    links: LinkSource,
    fetcher: MetadataFetcher,
    builder: SdistBuilder | None,
    direct: Sequence[DirectCandidate],
) -> list[Plan]:
    return [
        resolve(requirements, constraints, links, fetcher, options, builder=builder, direct=direct)
        for options in environments
    ]


def _resolve_keeping_pins(
    settings: Settings,
    request: LockRequest,
    environments: Sequence[ResolveOptions],
    links: LinkSource,
    fetcher: MetadataFetcher,
    reporter: Reporter,
    builder: SdistBuilder | None,
    direct: Sequence[DirectCandidate],
) -> list[Plan]:
    direct_names = {d.name for d in direct}
    kept = [
        c
        for c in _existing_pin_constraints(request, settings.requirements)
        if c.name not in direct_names  # a direct reference is locked to its source afresh
    ]
    constraints = [*settings.constraints, *kept]
    try:
        return _resolve_each(
            settings.requirements, constraints, environments, links, fetcher, builder, direct
        )
    except ResolutionFailed:
        if not kept:
            raise
        reporter.warning(
            f"the pins of {request.output} no longer resolve with the input; resolving afresh"
        )
        return _resolve_each(
            settings.requirements,
            settings.constraints,
            environments,
            links,
            fetcher,
            builder,
            direct,
        )


# --- the set of files of each chosen version -------------------------------------------------


def _version_of(link: FileLink) -> tuple[NormalizedName, Version] | None:
    try:
        if link.is_wheel:  # parse_wheel_filename's answer, from parses shared by each release
            name, version, _ = wheel_name_version_tags(link.filename)
        else:
            name, version = sdist_name_version(link.filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return name, version


def _files_of(links: LinkSource, name: NormalizedName, version: Version) -> list[FileLink]:
    """Every file the index lists for this version, of every platform (as pip-compile's
    ``--generate-hashes`` records them)."""
    found = [lk for lk in links.links_for(name) if _version_of(lk) == (name, version)]
    return sorted(found, key=lambda lk: lk.filename)


def _with_sha256(
    files: Sequence[FileLink], session: requests.Session, store: FileStore, timeout: float
) -> list[FileLink]:
    """Files the index lists without a sha256 are downloaded and hashed."""
    out = []
    for link in files:
        if link.sha256 is None:
            _, digests = download(session, link, store, Hashes(), timeout)
            link = dataclasses.replace(
                link, hashes=link.hashes | Hashes.from_mapping({"sha256": digests["sha256"]})
            )
        out.append(link)
    return out


# --- merging environments --------------------------------------------------------------------


def _via_label(comes_from: str) -> str:
    label = comes_from
    if label.endswith(")") and " (line " in label:
        label = label[: label.rindex(" (line ")]
    return label


def _applies(requirement: Requirement, markers: Mapping[str, str], extras: Sequence[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**markers, "extra": e}) for e in ("", *extras))


def _dependents(
    plan: Plan, markers: Mapping[str, str], inputs: Sequence[UserRequirement]
) -> dict[NormalizedName, set[str]]:
    via: dict[NormalizedName, set[str]] = {}
    chosen = {p.name for p in plan.pins}
    for pin in plan.pins:
        for text in pin.requires:
            req = Requirement(text)
            name = canonicalize_name(req.name)
            if name in chosen and _applies(req, markers, sorted(pin.extras)):
                via.setdefault(name, set()).add(pin.name)
    for r in inputs:
        if r.name in chosen and _applies(r.requirement, markers, ()):
            via.setdefault(r.name, set()).add(_via_label(r.comes_from))
    return via


@dataclass
class _Merged:
    name: NormalizedName
    version: Version
    environments: set[int]
    via: set[str]
    extras: set[str]


def _merge(
    plans: Sequence[Plan],
    environments: Sequence[ResolveOptions],
    inputs: Sequence[UserRequirement],
) -> list[_Merged]:
    merged: dict[tuple[NormalizedName, Version], _Merged] = {}
    for i, (plan, options) in enumerate(zip(plans, environments, strict=True)):
        via = _dependents(plan, options.markers, inputs)
        for pin in plan.pins:
            key = (pin.name, pin.version)
            entry = merged.setdefault(key, _Merged(pin.name, pin.version, set(), set(), set()))
            entry.environments.add(i)
            entry.via.update(via.get(pin.name, ()))
            if pin.requested:
                entry.extras.update(pin.extras)
    return [merged[k] for k in sorted(merged)]


def _marker_for(entry: _Merged, env_markers: Sequence[str]) -> str | None:
    if len(entry.environments) == len(env_markers):
        return None
    if len(entry.environments) == 1:
        return env_markers[next(iter(entry.environments))]
    return str(Marker(" or ".join(f"({env_markers[i]})" for i in sorted(entry.environments))))


def _sort_via(via: set[str], names: set[str]) -> tuple[str, ...]:
    return tuple(sorted(via, key=lambda v: (v in names, v)))


def _index_of(files: Sequence[FileLink], sources: Sequence[IndexSource]) -> str | None:
    index_urls = {s.url for s in sources if s.kind == "index"}
    for f in files:
        if f.index_url in index_urls:
            return f.index_url
    return None


def _locked_packages(
    merged: Sequence[_Merged],
    env_markers: Sequence[str],
    links: LinkSource,
    settings: Settings,
    session: requests.Session,
    store: FileStore,
    direct: Mapping[NormalizedName, _DirectSource] | None = None,
) -> tuple[LockedPackage, ...]:
    direct = direct or {}
    names = {str(m.name) for m in merged}
    out = []
    for entry in merged:
        if entry.name in direct:
            out.append(
                LockedPackage(
                    name=entry.name,
                    version=entry.version,
                    files=(),
                    marker=_marker_for(entry, env_markers),
                    via=_sort_via(entry.via, names),
                    extras=tuple(sorted(entry.extras)),
                    direct=direct[entry.name].locked,
                )
            )
            continue
        files = _with_sha256(
            _files_of(links, entry.name, entry.version), session, store, settings.net.timeout
        )
        out.append(
            LockedPackage(
                name=entry.name,
                version=entry.version,
                files=tuple(files),
                index=_index_of(files, settings.sources),
                marker=_marker_for(entry, env_markers),
                via=_sort_via(entry.via, names),
                extras=tuple(sorted(entry.extras)),
            )
        )
    return tuple(out)


def _index_lines(sources: Sequence[IndexSource]) -> tuple[str, ...]:
    lines: list[str] = []
    indexes = [s for s in sources if s.kind == "index"]
    if not indexes:
        lines.append("--no-index")
    elif not indexes[0].public:
        lines.append(f"--index-url {indexes[0].url}")
    lines.extend(f"--extra-index-url {s.url}" for s in indexes[1:])
    lines.extend(f"--find-links {s.url}" for s in sources if s.kind == "find-links")
    return tuple(lines)


def _explicit_index_lines(sources: Sequence[IndexSource]) -> tuple[str, ...]:
    """Index options naming every index, the default one too: installing a lock's build
    dependencies asks exactly these (safepip.buildconstraints)."""
    indexes = [s for s in sources if s.kind == "index"]
    lines = [
        f"--index-url {s.url}" if i == 0 else f"--extra-index-url {s.url}"
        for i, s in enumerate(indexes)
    ]
    if not indexes:
        lines.append("--no-index")
    lines.extend(f"--find-links {s.url}" for s in sources if s.kind == "find-links")
    return tuple(lines)


def _relative_to(path: str, base_dir: str) -> str:
    """Where the build constraints are, from the lock's directory (how installs find them)."""
    return Path(os.path.relpath(os.path.abspath(path), base_dir)).as_posix()


# --- verification and build dependencies -----------------------------------------------------


def _verify_chosen(
    plans: Sequence[Plan], session: requests.Session, store: FileStore, timeout: float
) -> None:
    """Download the file each environment would install, check its hashes and its metadata."""
    pins = {}
    for plan in plans:
        for pin in plan.to_install():
            assert isinstance(pin.source, FileLink)
            if pin.direct is None:  # direct references: `_lock_direct`
                pins[pin.source.url] = pin
    chosen = [pins[u] for u in sorted(pins)]
    items = []
    for pin in chosen:
        assert isinstance(pin.source, FileLink)
        items.append((pin.source, pin.expected_hashes))
    results = download_all(session, items, store, timeout)
    for pin, (path, _) in zip(chosen, results, strict=True):
        verify_wheel(pin, path)


_Sdists = Sequence[tuple[LockedPackage, FileLink, Path]]


def _download_sdists(
    packages: Sequence[LockedPackage], session: requests.Session, store: FileStore, timeout: float
) -> _Sdists:
    """Every sdist of the locked set, downloaded and checked against its hashes."""
    sdists = [(p, f) for p in packages for f in p.files if not f.is_wheel]
    results = download_all(session, [(f, f.hashes) for _, f in sdists], store, timeout)
    return [(p, f, path) for (p, f), (path, _) in zip(sdists, results, strict=True)]


def _build_requirements(
    sdists: _Sdists, direct: Mapping[NormalizedName, _DirectSource]
) -> list[UserRequirement]:
    out = [
        UserRequirement(
            requirement=Requirement(text),
            comes_from=f"{name} @ {redact_url(source.shown)} (build-system.requires)",
        )
        for name, source in sorted(direct.items())
        for text in source.build_requires
    ]
    # Each archive is read up to its pyproject.toml (all of it when it has none), a few at a time.
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="safepip-sdist") as pool:
        requires = list(
            pool.map(lambda item: static_build_requires(item[2], item[1].filename), sdists)
        )
    for (package, _, _), texts in zip(sdists, requires, strict=True):
        for text in texts:
            out.append(
                UserRequirement(
                    requirement=Requirement(text),
                    comes_from=f"{package.name}=={package.version} (build-system.requires)",
                )
            )
    return out


def _resolve_build_sets(
    requirements: Sequence[UserRequirement],
    environments: Sequence[ResolveOptions],
    links: LinkSource,
    fetcher: MetadataFetcher,
    reporter: Reporter,
) -> tuple[list[Plan], list[UserRequirement]]:
    """Resolve every source's build requirements together: one constraints file can pin each
    build dependency once. When two sources ask for versions that exclude each other, the
    sources are taken one by one (in a stable order) and a source that conflicts with those
    already taken is left out with a warning; its build would then be refused under the lock
    (its build dependencies unpinned) rather than run with dependencies nobody locked."""

    tables: list[VersionTables] = [{} for _ in environments]  # the same for every attempt

    def attempt(reqs: Sequence[UserRequirement], look_ahead: bool = False) -> list[Plan] | None:
        try:
            return [
                resolve(reqs, (), links, fetcher, o, look_ahead=look_ahead, version_tables=table)
                for o, table in zip(environments, tables, strict=True)
            ]
        except ResolutionFailed:
            return None

    # The first attempt fetches what every later one (a subset of it) may look at.
    plans = attempt(requirements, look_ahead=True)
    if plans is not None:
        return plans, list(requirements)
    by_source: dict[str, list[UserRequirement]] = {}
    for requirement in requirements:
        by_source.setdefault(requirement.comes_from or "", []).append(requirement)
    taken: list[UserRequirement] = []
    taken_texts: set[str] = set()
    kept: list[Plan] = []
    for source in sorted(by_source):
        texts = {str(r.requirement) for r in by_source[source]}
        if kept and texts <= taken_texts:
            taken.extend(by_source[source])  # nothing it asks is new: the same resolution
            continue
        trial = attempt([*taken, *by_source[source]])
        if trial is None:
            asked = ", ".join(str(r.requirement) for r in by_source[source])
            reporter.warning(
                f"build dependencies of {source} ({asked}) conflict with the other sources' "
                "and are left out of the build constraints: building it from source under this "
                "lock stops for want of pinned build dependencies; its wheels install as usual"
            )
            continue
        taken.extend(by_source[source])
        taken_texts |= texts
        kept = trial
    return kept, taken


def _lock_build_dependencies(
    sdists: _Sdists,
    environments: Sequence[ResolveOptions],
    env_markers: Sequence[str],
    settings: Settings,
    links: LinkSource,
    fetcher: MetadataFetcher,
    session: requests.Session,
    store: FileStore,
    direct: Mapping[NormalizedName, _DirectSource],
    reporter: Reporter,
) -> tuple[LockedPackage, ...]:
    requirements = _build_requirements(sdists, direct)
    if not requirements:
        return ()
    wheels_only = [
        dataclasses.replace(o, allows_source=lambda _: False, allows_binary=lambda _: True)
        for o in environments
    ]
    plans, requirements = _resolve_build_sets(requirements, wheels_only, links, fetcher, reporter)
    if not requirements:
        return ()
    _verify_chosen(plans, session, store, settings.net.timeout)
    merged = _merge(plans, wheels_only, requirements)
    return _locked_packages(merged, env_markers, links, settings, session, store)


# --- direct references -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _DirectSource:
    """A direct reference as the lock records it, with its static build requirements."""

    locked: LockedDirect
    build_requires: tuple[str, ...]
    shown: str


def _tree_path(pin: Pin) -> Path:
    assert isinstance(pin.source, FileLink)
    return Path(urllib.request.url2pathname(urllib.parse.urlsplit(pin.source.url).path))


def _direct_source(
    pin: Pin, session: requests.Session, store: FileStore, timeout: float
) -> _DirectSource:
    """A git reference is locked to the commit it was checked out at, a directory to its
    path, and a wheel or archive to the sha256 of the file fetched (checked against any hash
    given for it)."""
    reference = pin.direct
    assert reference is not None and isinstance(pin.source, FileLink)
    if reference.kind == "vcs":
        repo, ref = split_vcs_url(reference.url)
        assert reference.commit_id is not None
        locked = LockedDirect(
            kind="vcs",
            url=repo,
            commit_id=reference.commit_id,
            requested_revision=None if ref is None or is_commit_id(ref) else ref,
            subdirectory=reference.subdirectory,
        )
        return _DirectSource(locked, tree_build_requires(_tree_path(pin)), reference.url)
    if reference.kind == "directory":
        root = Path(urllib.request.url2pathname(urllib.parse.urlsplit(reference.url).path))
        locked = LockedDirect(
            kind="directory",
            url=root.resolve().as_uri(),
            subdirectory=reference.subdirectory,
            editable=reference.editable,
        )
        return _DirectSource(locked, tree_build_requires(_tree_path(pin)), reference.url)
    path, digests = download(session, pin.source, store, pin.expected_hashes, timeout)
    if reference.kind == "wheel":
        verify_wheel(pin, path)
        requires: tuple[str, ...] = ()
    else:
        requires = static_build_requires(path, pin.source.filename)
    locked = LockedDirect(
        kind="archive",
        url=reference.url,
        subdirectory=reference.subdirectory,
        sha256=digests["sha256"],
    )
    return _DirectSource(locked, requires, reference.url)


def _lock_direct(
    plans: Sequence[Plan], session: requests.Session, store: FileStore, timeout: float
) -> dict[NormalizedName, _DirectSource]:
    pins = {p.name: p for plan in plans for p in plan.to_install() if p.direct is not None}
    return {name: _direct_source(pins[name], session, store, timeout) for name in sorted(pins)}


def _index_only(plans: Sequence[Plan]) -> list[Plan]:
    """The plans without their direct references, whose names never go to an index."""
    return [Plan(pins=tuple(p for p in plan.pins if p.direct is None)) for plan in plans]


# --- the command -----------------------------------------------------------------------------


def run_lock(
    settings: Settings,
    base_options: ResolveOptions,
    links: LinkSource,
    fetcher: MetadataFetcher,
    session: requests.Session,
    store: FileStore,
    reporter: Reporter,
    builder: SdistBuilder | None = None,
    direct: Sequence[DirectCandidate] = (),
) -> LockOutcome:
    """Resolve, hash and write the lock (and the build constraints when there are sdists)."""
    request = LockRequest.from_settings(settings)
    pinning = pin_request(settings, request.output, request.upgrade_packages)
    environments = [environment_options(base_options, e) for e in request.environments]
    env_markers = [environment_marker(o.markers) for o in environments]
    plans = _resolve_keeping_pins(
        settings, request, environments, links, fetcher, reporter, builder, direct
    )
    # The plan gates, and the SBOM of what is locked (safepip.gates, safepip.sbom).
    locked_plan = gate_lock(settings, _index_only(plans), links, request.output, reporter)
    sources = _lock_direct(plans, session, store, settings.net.timeout)
    merged = _merge(plans, environments, settings.requirements)
    packages = _locked_packages(merged, env_markers, links, settings, session, store, sources)
    # The sdists whose build requirements are locked come in while the chosen files are checked.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="safepip-sdists") as pool:
        sdists = pool.submit(_download_sdists, packages, session, store, settings.net.timeout)
        _verify_chosen(plans, session, store, settings.net.timeout)  # a refusal waits for them
        downloaded = sdists.result()
    if pinning is not None:  # publisher identities (PEP 740): safepip.attestlock
        indexed = [p for p in packages if p.direct is None]  # direct references have no index
        pinned = iter(pin_identities(pinning, indexed, settings, session, reporter))
        packages = tuple(p if p.direct is not None else next(pinned) for p in packages)
    build = _lock_build_dependencies(
        downloaded,
        environments,
        env_markers,
        settings,
        links,
        fetcher,
        session,
        store,
        sources,
        reporter,
    )
    build_path = request.build_constraints_output if build else None
    base_dir = os.path.dirname(os.path.abspath(request.output)) if request.output != "-" else "."
    document = LockDocument(
        packages=packages,
        environments=tuple(sorted(set(env_markers))),
        command=request.command,
        index_lines=_index_lines(settings.sources),
        build_constraints=_relative_to(build_path, base_dir) if build_path else None,
        base_dir=base_dir,
    )
    text = render(document, request.format)
    if build_path is not None:
        build_doc = LockDocument(
            packages=build,
            environments=document.environments,
            command=request.command,
            title="build constraints",
            index_lines=_explicit_index_lines(settings.sources),
        )
        write_text_atomic(build_path, render(build_doc, "requirements"))
    write_text_atomic(request.output, text)
    write_sbom_if_asked(
        settings.extra,
        locked_plan,
        {},
        settings.sources,
        identities={p.name: p.identity for p in packages if p.identity is not None},
    )
    if request.output != "-":
        reporter.info(
            f"Locked {len(packages)} project(s) for {len(env_markers)} environment(s) "
            f"into {request.output}"
            + (f"; build dependencies into {build_path}" if build_path else "")
        )
    return LockOutcome(document=document, text=text, build_constraints=build_path)
