"""Resolution with resolvelib: our provider, lazy candidates, PEP 658/range metadata first."""

from __future__ import annotations

import dataclasses
import datetime
import email.parser
import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, parse_tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version
from resolvelib import BaseReporter, ResolutionImpossible, ResolutionTooDeep, Resolver
from resolvelib.providers import AbstractProvider

from safepip.cooldown import check_upload_time_known
from safepip.errors import PolicyRefusal, ResolutionFailed, SafepipError
from safepip.models import (
    AlreadyInstalled,
    DirectReference,
    FileLink,
    Hashes,
    InstalledDist,
    Pin,
    Plan,
    UserRequirement,
)
from safepip.speculate import MetadataPrefetch, Speculator, parse_requirement

__all__ = [
    "CoreMetadata",
    "DirectCandidate",
    "ResolveOptions",
    "VersionTables",
    "parse_metadata",
    "resolve",
    "sdist_name_version",
    "wheel_name_version_tags",
]

PYTHON_ID = "<python>"


@dataclass(frozen=True, slots=True)
class CoreMetadata:
    name: NormalizedName
    version: Version
    requires_dist: tuple[str, ...]
    requires_python: str | None
    raw: bytes


_BROKEN_METADATA_HINT = "the index serves a broken distribution; pin another version of it"


def parse_metadata(raw: bytes, where: str) -> CoreMetadata:
    """The fields of core metadata that resolution needs; malformed metadata is an error."""
    if len(raw) > 16 * 1024 * 1024:
        raise SafepipError(
            f"metadata of {where} is too large",
            hint=_BROKEN_METADATA_HINT,
            reference="invalid-metadata",
        )
    msg = email.parser.BytesParser().parsebytes(_header_block(raw), headersonly=True)
    name, version = msg.get("Name"), msg.get("Version")
    if not name or not version:
        raise SafepipError(
            f"metadata of {where} has no Name or Version",
            hint=_BROKEN_METADATA_HINT,
            reference="invalid-metadata",
        )
    try:
        parsed_version = Version(str(version))
    except InvalidVersion:
        raise SafepipError(
            f"metadata of {where} has an invalid version {str(version)[:80]!r}",
            hint=_BROKEN_METADATA_HINT,
            reference="invalid-metadata",
        ) from None
    requires = tuple(str(r) for r in msg.get_all("Requires-Dist") or ())
    rp = msg.get("Requires-Python")
    return CoreMetadata(
        name=canonicalize_name(str(name)),
        version=parsed_version,
        requires_dist=requires,
        requires_python=str(rp).strip() if rp and str(rp).strip() else None,
        raw=raw,
    )


# Each project's usable versions and their files, for one set of links and resolve options.
VersionTables = dict[NormalizedName, dict[Version, list[FileLink]]]


@functools.lru_cache(maxsize=1024)
def _specifier_set(text: str) -> SpecifierSet:
    return SpecifierSet(text)


def wheel_name_version_tags(filename: str) -> tuple[NormalizedName, Version, frozenset[Tag]]:
    """``parse_wheel_filename(filename)`` without the build number, from two parses shared by
    every file that has the same part: the name, version and build (one per release) and the
    tags (a few dozen on a page of thousands of files). Raises as it does."""
    if not filename.endswith(".whl") or filename.count("-") not in (4, 5):
        raise InvalidWheelFilename(f"Invalid wheel filename: {filename!r}")
    stem, interpreters, abis, platforms = filename[:-4].rsplit("-", 3)
    name, version = _wheel_stem(stem)
    return name, version, _wheel_tags(f"{interpreters}-{abis}-{platforms}")


def sdist_name_version(filename: str) -> tuple[NormalizedName, Version]:
    """``parse_sdist_filename(filename)``, from the parse of the release's wheels when the name
    has no dash of its own (``boto3-1.28.0.tar.gz`` shares ``boto3-1.28.0`` with the release's
    wheel): the same answer; the same errors, as anything the shared parse does not take goes
    to ``parse_sdist_filename`` itself."""
    for suffix in (".tar.gz", ".zip"):
        if filename.endswith(suffix):
            stem = filename[: -len(suffix)]
            if stem.count("-") == 1:
                try:
                    return _wheel_stem(stem)
                except (InvalidWheelFilename, InvalidVersion):
                    break
            break
    return parse_sdist_filename(filename)


@functools.lru_cache(maxsize=8192)
def _wheel_stem(stem: str) -> tuple[NormalizedName, Version]:
    """Name and version of the wheels named ``stem-TAGS.whl``: the tags have no part in them,
    and any tags that parse give the same answer and the same errors for the rest."""
    name, version, _build, _tags = parse_wheel_filename(stem + "-py3-none-any.whl")
    return name, version


@functools.lru_cache(maxsize=1024)
def _wheel_tags(tag_text: str) -> frozenset[Tag]:
    """The tags of a wheel's ``INTERPRETER-ABI-PLATFORM`` part, as ``parse_wheel_filename``
    parses them (an invalid part makes the whole name invalid)."""
    try:
        return parse_tag(tag_text)
    except ValueError:  # packaging's InvalidTag (26.3 on), which it turns into this
        raise InvalidWheelFilename(f"Invalid wheel filename (invalid tag): {tag_text!r}") from None


def _header_block(raw: bytes) -> bytes:
    """The header lines of core metadata, up to the first empty line (the body, often a long
    description, is all the rest and not read when only headers are parsed); with any carriage
    return before it, all of it, for the email parser to split as it does."""
    end = raw.find(b"\n\n")
    if end == -1 or b"\r" in raw[:end]:
        return raw
    return raw[: end + 1]


class MetadataSource(Protocol):
    def metadata(self, link: FileLink) -> bytes: ...


class SdistBuilder(Protocol):
    """Produces core metadata for a source distribution (the sandbox stage provides one)."""

    def prepare_metadata(self, link: FileLink) -> bytes: ...


@dataclass(frozen=True, slots=True)
class DirectCandidate:
    """A direct reference made concrete before resolution: its project, version, the file (or
    source tree) it names, and the core metadata read or prepared from it."""

    name: NormalizedName
    version: Version
    link: FileLink
    metadata: bytes
    reference: DirectReference


class RefuseBuilds:
    """Without a working sandbox, source distributions are never built."""

    def prepare_metadata(self, link: FileLink) -> bytes:
        name = parse_sdist_filename(link.filename)[0]
        raise PolicyRefusal(
            f"{link.filename} is a source distribution; safepip does not run build code "
            "outside its sandbox, and no sandboxed build is available",
            hint=f"pick a version of {name} that has a wheel for this Python, "
            "or use --only-binary :all: to see which do",
            reference="build-refused",
        )


@dataclass(frozen=True, slots=True)
class ResolveOptions:
    tags: Sequence[Tag]
    markers: Mapping[str, str]
    python_version: Version
    installed: Mapping[NormalizedName, InstalledDist]
    upgrade: bool = False
    upgrade_strategy: str = "only-if-needed"
    ignore_installed: bool = False
    force_reinstall: bool = False
    no_deps: bool = False
    allows_prereleases: Callable[[NormalizedName], bool | None] = lambda _: None
    allows_binary: Callable[[NormalizedName], bool] = lambda _: True
    allows_source: Callable[[NormalizedName], bool] = lambda _: True
    prefer_binary: bool = False
    ignore_requires_python: bool = False
    uploaded_prior_to: datetime.datetime | None = None


class LinkSource(Protocol):
    """Gives the files that may serve a project (after index policy)."""

    def links_for(self, name: NormalizedName) -> Sequence[FileLink]: ...

    def prefetch(self, names: Iterable[NormalizedName]) -> None: ...


# --- requirements and candidates -------------------------------------------------------


def _identifier(name: NormalizedName, extras: frozenset[str]) -> str:
    return f"{name}[{','.join(sorted(extras))}]" if extras else name


@dataclass(eq=False)
class Candidate:
    name: NormalizedName
    version: Version
    link: FileLink | None = None
    installed: InstalledDist | None = None
    extras: frozenset[str] = frozenset()
    base: Candidate | None = None
    _meta: CoreMetadata | None = field(default=None, repr=False)

    @property
    def identifier(self) -> str:
        return _identifier(self.name, self.extras)

    def __repr__(self) -> str:
        return f"{self.identifier}=={self.version}"


@dataclass(frozen=True)
class SpecRequirement:
    name: NormalizedName
    extras: frozenset[str]
    specifier: SpecifierSet
    parent: str | None
    text: str
    hashes: Hashes = Hashes()
    user: bool = False

    @property
    def identifier(self) -> str:
        return _identifier(self.name, self.extras)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class ExplicitRequirement:
    candidate: Candidate

    @property
    def identifier(self) -> str:
        return self.candidate.name

    def __str__(self) -> str:
        return f"{self.candidate.name}=={self.candidate.version}"


@dataclass(frozen=True)
class PythonRequirement:
    specifier: SpecifierSet
    parent: str | None

    identifier = PYTHON_ID

    def __str__(self) -> str:
        return f"Python{self.specifier}"


AnyRequirement = SpecRequirement | ExplicitRequirement | PythonRequirement


class Provider(AbstractProvider):  # type: ignore[misc]
    """resolvelib's provider: it finds candidates, orders them and lists their dependencies."""

    def __init__(
        self,
        links: LinkSource,
        metadata: MetadataSource,
        builder: SdistBuilder,
        options: ResolveOptions,
        constraints: Mapping[NormalizedName, list[UserRequirement]],
        user_names: frozenset[NormalizedName],
        look_ahead: bool = True,
        version_tables: VersionTables | None = None,
    ) -> None:
        self.links = links
        self.metadata_source = metadata
        self.builder = builder
        self.options = options
        self.constraints = constraints
        self.user_names = user_names
        self.python = Candidate(name=canonicalize_name("python"), version=options.python_version)
        self._tag_rank = {tag: i for i, tag in enumerate(options.tags)}
        self._tag_texts = frozenset(str(tag) for tag in options.tags)
        self._fits: dict[str, bool] = {}
        self._ranks: dict[str, tuple[int, int]] = {}
        self._by_public: dict[NormalizedName, dict[Version, list[Version]]] = {}
        self._by_version: VersionTables = {} if version_tables is None else version_tables
        # One thread works out a project's table; the others (the speculation's, the
        # resolver's) wait for it instead of doing the same work beside it.
        self._version_locks: dict[NormalizedName, threading.Lock] = {}
        self._version_locks_lock = threading.Lock()
        # Candidates are interned so that resolvelib's incompatibilities (compared by identity)
        # keep meaning the same candidate across calls.
        self._interned: dict[tuple[object, ...], Candidate] = {}
        self._matches: dict[NormalizedName, list[Candidate]] = {}
        self._ahead_until: dict[NormalizedName, tuple[list[Candidate], int]] = {}
        # What the user's own requirements ask of a project: every version chosen meets it, so
        # the speculation need not look at others (a dependency's wider range included).
        self.user_specifiers: dict[NormalizedName, SpecifierSet] = {}
        # Metadata parsed once, by the speculation thread that fetched it or by the resolver.
        self._parsed: dict[bytes, CoreMetadata] = {}
        self._python_ok: dict[str, bool] = {}
        self._marker_env: dict[str, dict[str, str]] = {}
        self.speculator: Speculator | None = None
        # Direct references: the only candidate for their project, never looked up on an index.
        self.direct: dict[NormalizedName, Candidate] = {}
        if look_ahead and isinstance(metadata, MetadataPrefetch):
            self.speculator = Speculator(
                metadata,
                self._likely_link,
                lambda raw: self._parse(raw, "speculation").requires_dist,
                options.markers,
                pages=links.prefetch,
            )

    # resolvelib API

    def identify(self, requirement_or_candidate: Any) -> str:
        if isinstance(requirement_or_candidate, Candidate):
            if requirement_or_candidate is self.python:
                return PYTHON_ID
            return requirement_or_candidate.identifier
        return str(requirement_or_candidate.identifier)

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, Candidate],
        candidates: Mapping[str, Iterator[Candidate]],
        information: Mapping[str, Iterator[Any]],
        backtrack_causes: Sequence[Any],
    ) -> Any:
        infos = list(information[identifier])
        reqs = [i.requirement for i in infos]
        explicit = any(isinstance(r, ExplicitRequirement) for r in reqs)
        pinned = any(
            isinstance(r, SpecRequirement)
            and any(s.operator in ("==", "===") and "*" not in s.version for s in r.specifier)
            for r in reqs
        )
        direct = any(i.parent is None for i in infos)
        causes = {c.requirement.identifier for c in backtrack_causes}
        return (
            identifier != PYTHON_ID,
            not explicit,
            not pinned,
            identifier not in causes,
            not direct,
            identifier,
        )

    def find_matches(
        self,
        identifier: str,
        requirements: Mapping[str, Iterator[AnyRequirement]],
        incompatibilities: Mapping[str, Iterator[Candidate]],
    ) -> Iterable[Candidate]:
        reqs = list(requirements[identifier])
        bad = {id(c) for c in incompatibilities[identifier]}
        if identifier == PYTHON_ID:
            ok = all(
                isinstance(r, PythonRequirement)
                and r.specifier.contains(self.python.version, prereleases=True)
                for r in reqs
            )
            return [self.python] if ok and id(self.python) not in bad else []
        explicit = [r.candidate for r in reqs if isinstance(r, ExplicitRequirement)]
        if explicit:
            first = explicit[0]
            if all(c is first for c in explicit) and id(first) not in bad:
                return [first]
            return []
        spec_reqs = [r for r in reqs if isinstance(r, SpecRequirement)]
        name = spec_reqs[0].name
        extras = spec_reqs[0].extras
        base = [c for c in self._base_candidates(name, spec_reqs) if id(c) not in bad]
        self._matches[name] = base
        return [c if not extras else self._with_extras(c, extras) for c in base]

    def is_satisfied_by(self, requirement: AnyRequirement, candidate: Candidate) -> bool:
        if isinstance(requirement, PythonRequirement):
            return requirement.specifier.contains(candidate.version, prereleases=True)
        if isinstance(requirement, ExplicitRequirement):
            target = candidate.base or candidate
            return target is requirement.candidate
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(self, candidate: Candidate) -> Iterable[AnyRequirement]:
        if candidate is self.python:
            return []
        if candidate.base is not None:
            deps: list[AnyRequirement] = [ExplicitRequirement(candidate.base)]
            if not self.options.no_deps:
                meta = self._metadata(candidate.base)
                deps.extend(
                    self._requirements_from(meta, candidate, candidate.extras, extras_only=True)
                )
            return deps
        if self.options.no_deps:
            return []
        self._look_ahead(candidate)
        meta = self._metadata(candidate)
        deps = list(self._requirements_from(meta, candidate, frozenset(), extras_only=False))
        if meta.requires_python and not self.options.ignore_requires_python:
            try:
                deps.append(
                    PythonRequirement(_specifier_set(meta.requires_python), repr(candidate))
                )
            except InvalidSpecifier:
                pass
        index_deps = [
            d for d in deps if isinstance(d, SpecRequirement) and d.name not in self.direct
        ]
        self.links.prefetch(d.name for d in index_deps)
        if self.speculator is not None:
            for d in index_deps:
                self.speculator.walk(d.name, d.specifier, d.extras)
        return deps

    # speculation (warms the metadata cache only)

    def _look_ahead(self, candidate: Candidate, window: int = 8, limit: int = 48) -> None:
        """When the resolver moves past the first candidate of a project it is backtracking:
        fetch the metadata of the next ones in parallel, in the order it will try them, the
        further ahead the longer it has been going (at least ``window``, twice as many as it
        has passed over, at most ``limit``: enough to keep every fetching thread busy, not so
        many that the fetches of candidates it never reaches take the CPU it needs)."""
        matches = self._matches.get(candidate.name, [])
        if self.speculator is None or not matches or matches[0] is candidate:
            return
        try:
            at = matches.index(candidate)
        except ValueError:
            return
        end = at + 1 + min(max(window, 2 * at), limit)
        # Each candidate is handed over once: only those past the last look-ahead's end.
        seen_list, done = self._ahead_until.get(candidate.name, (None, 0))
        start = max(at + 1, done) if seen_list is matches else at + 1
        if end <= start:
            return
        self._ahead_until[candidate.name] = (matches, end)
        self.speculator.ahead([c.link for c in matches[start:end] if c.link is not None])

    def _likely_link(self, name: NormalizedName, specifier: SpecifierSet) -> FileLink | None:
        """The file of the version the resolver will most likely choose for ``name``."""
        installed = self.options.installed.get(name)
        if (
            installed is not None
            and self._prefer_installed(name)
            and not (self.options.ignore_installed or self.options.force_reinstall)
            and specifier.contains(installed.version, prereleases=True)
        ):
            return None
        combined = specifier & self.user_specifiers.get(name, SpecifierSet())
        for c in self.constraints.get(name, []):
            combined &= c.requirement.specifier
        versions = self._versions(name)
        prereleases = self.options.allows_prereleases(name)
        for version in sorted(
            combined.filter(versions.keys(), prereleases=prereleases), reverse=True
        ):
            unyanked = [lk for lk in versions[version] if not lk.yanked]
            if unyanked:
                return self._best_link(unyanked)
        return None

    # helpers

    def _requirements_from(
        self, meta: CoreMetadata, parent: Candidate, extras: frozenset[str], *, extras_only: bool
    ) -> Iterator[SpecRequirement]:
        for text in meta.requires_dist:
            try:
                req = parse_requirement(text)
            except InvalidRequirement:
                raise SafepipError(
                    f"{parent!r} declares an invalid requirement {text[:120]!r}",
                    hint=_BROKEN_METADATA_HINT,
                    reference="invalid-metadata",
                ) from None
            if req.url:
                raise PolicyRefusal(
                    f"{parent!r} depends on a direct URL ({req.name} @ ...), which safepip does not "
                    "follow from a dependency",
                    reference="direct-url-dependency",
                )
            if extras_only:
                if req.marker is None:
                    continue
                if not any(self._marker_ok(req.marker, e) for e in extras) or self._marker_ok(
                    req.marker, ""
                ):
                    continue
            elif req.marker is not None and not self._marker_ok(req.marker, ""):
                continue
            yield SpecRequirement(
                name=canonicalize_name(req.name),
                extras=frozenset(canonicalize_name(e) for e in req.extras),
                specifier=req.specifier,
                parent=repr(parent),
                text=str(req),
            )

    def _marker_ok(self, marker: Marker, extra: str) -> bool:
        env = self._marker_env.get(extra)
        if env is None:
            env = self._marker_env[extra] = {**self.options.markers, "extra": extra}
        return bool(marker.evaluate(dict(env)))

    def _parse(self, raw: bytes, where: str) -> CoreMetadata:
        meta = self._parsed.get(raw)
        if meta is None:
            meta = self._parsed[raw] = parse_metadata(raw, where)
        return meta

    def _metadata(self, candidate: Candidate) -> CoreMetadata:
        if candidate._meta is not None:
            return candidate._meta
        if candidate.installed is not None:
            lines = "".join(f"Requires-Dist: {r}\n" for r in candidate.installed.requires)
            raw = f"Name: {candidate.name}\nVersion: {candidate.version}\n{lines}".encode()
            candidate._meta = parse_metadata(raw, repr(candidate))
            return candidate._meta
        assert candidate.link is not None
        link = candidate.link
        if link.is_wheel:
            raw = self.metadata_source.metadata(link)
        else:
            raw = self.builder.prepare_metadata(link)
        meta = self._parse(raw, link.filename)
        if meta.name != candidate.name or meta.version != candidate.version:
            raise PolicyRefusal(
                f"{link.filename} says it is {meta.name} {meta.version} in its metadata",
                hint="the index serves a file under the wrong name; do not install it",
                reference="metadata-mismatch",
            )
        candidate._meta = meta
        return meta

    def _intern(self, key: tuple[object, ...], make: Callable[[], Candidate]) -> Candidate:
        found = self._interned.get(key)
        if found is None:
            found = self._interned[key] = make()
        return found

    def _with_extras(self, base: Candidate, extras: frozenset[str]) -> Candidate:
        return self._intern(
            ("extras", id(base), extras),
            lambda: Candidate(
                name=base.name,
                version=base.version,
                link=base.link,
                installed=base.installed,
                extras=extras,
                base=base,
            ),
        )

    def _versions(self, name: NormalizedName) -> dict[Version, list[FileLink]]:
        cached = self._by_version.get(name)
        if cached is not None:
            return cached
        with self._version_locks_lock:
            lock = self._version_locks.setdefault(name, threading.Lock())
        with lock:
            cached = self._by_version.get(name)
            if cached is not None:
                return cached
            by_version: dict[Version, list[FileLink]] = {}
            for link in self.links.links_for(name):
                version = self._usable_version(name, link)
                if version is not None:
                    by_version.setdefault(version, []).append(link)
            self._by_version[name] = by_version
            return by_version

    def _usable_version(self, name: NormalizedName, link: FileLink) -> Version | None:
        if link.is_wheel and not self._may_fit(link.filename):
            return None  # most of a large project's wheels are for other platforms
        try:
            if link.is_wheel:
                wname, version, tags = wheel_name_version_tags(link.filename)
                if wname != name or not self.options.allows_binary(name):
                    return None
                if not any(t in self._tag_rank for t in tags):
                    return None
            else:
                sname, version = sdist_name_version(link.filename)
                if sname != name:
                    return None
        except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
            return None
        # pip checks the upload time here: after the wheel checks, before the others.
        cutoff = self.options.uploaded_prior_to
        if cutoff is not None and not link.url.startswith("file:"):
            check_upload_time_known(link)
            if link.upload_time is not None and link.upload_time >= cutoff:
                return None
        if not link.is_wheel and not self.options.allows_source(name):
            return None
        if link.requires_python and not self.options.ignore_requires_python:
            if not self._supports_python(link.requires_python):
                return None
        return version

    def _may_fit(self, filename: str) -> bool:
        """Whether a wheel's file name carries a tag the target supports, read from its last
        three fields as ``parse_wheel_filename`` reads them, without parsing the rest (a name
        that is no valid wheel name fits nothing either way); worked out once per tag text."""
        text = filename[:-4]
        if text.count("-") not in (4, 5):
            return False
        _stem, *tag_fields = text.rsplit("-", 3)
        key = "-".join(tag_fields)  # the fields hold no dash: one text per combination
        fits = self._fits.get(key)
        if fits is None:
            interpreters, abis, platforms = key.lower().split("-")
            fits = any(
                f"{i}-{a}-{p}" in self._tag_texts
                for i in interpreters.split(".")
                for a in abis.split(".")
                for p in platforms.split(".")
            )
            self._fits[key] = fits
        return fits

    def _supports_python(self, requires_python: str) -> bool:
        """Whether the target's Python meets ``requires_python`` (an invalid one is ignored)."""
        ok = self._python_ok.get(requires_python)
        if ok is None:
            try:
                spec = _specifier_set(requires_python)
                ok = spec.contains(self.options.python_version, prereleases=True)
            except InvalidSpecifier:
                ok = True
            self._python_ok[requires_python] = ok
        return ok

    def _best_link(self, links: Sequence[FileLink]) -> FileLink:
        return links[0] if len(links) == 1 else min(links, key=self._link_rank)

    def _link_rank(self, link: FileLink) -> tuple[int, int]:
        """Wheels first, the one with the most preferred tag first; ranked once per file."""
        found = self._ranks.get(link.filename)
        if found is None:
            if link.is_wheel:
                tags = wheel_name_version_tags(link.filename)[2]
                found = (0, min(self._tag_rank.get(t, 1 << 30) for t in tags))
            else:
                found = (1, 0)
            self._ranks[link.filename] = found
        return found

    def _base_candidates(
        self, name: NormalizedName, reqs: Sequence[SpecRequirement]
    ) -> list[Candidate]:
        specifiers = [r.specifier for r in reqs]
        specifiers.extend(c.requirement.specifier for c in self.constraints.get(name, []))
        combined = SpecifierSet()
        for spec in specifiers:
            combined &= spec
        direct = self.direct.get(name)
        if direct is not None:
            return [direct] if combined.contains(direct.version, prereleases=True) else []
        exact_pin = any(s.operator in ("==", "===") for spec in specifiers for s in spec)
        allowed_hashes = Hashes()
        for r in reqs:
            allowed_hashes |= r.hashes
        for c in self.constraints.get(name, []):
            allowed_hashes |= c.hashes
        versions = self._versions(name)
        prereleases = self.options.allows_prereleases(name)
        pool = self._pinned_pool(name, specifiers)
        accepted = list(
            combined.filter(versions.keys() if pool is None else pool, prereleases=prereleases)
        )
        result: list[Candidate] = []
        for version in sorted(accepted, reverse=True):
            links = versions[version]
            if allowed_hashes:
                matching = [
                    lk
                    for lk in links
                    if lk.sha256 and lk.sha256 in allowed_hashes.allowed("sha256")
                ]
                # None matching: keep them, so the download fails loudly as a hash mismatch.
                links = matching or links
            unyanked = [lk for lk in links if not lk.yanked]
            if not unyanked:
                if not exact_pin:
                    continue
                unyanked = links
            link = self._best_link(unyanked)
            result.append(
                self._intern(
                    ("link", name, version, link.url),
                    lambda v=version, lk=link: Candidate(name=name, version=v, link=lk),  # type: ignore[misc]
                )
            )
        if self.options.prefer_binary:
            result.sort(key=lambda c: not (c.link and c.link.is_wheel))
        installed = self._installed_candidate(name, combined)
        if installed is not None:
            if self._prefer_installed(name):
                result = [installed, *[c for c in result if c.version != installed.version]]
            else:
                result = (
                    [installed if c.version == installed.version else c for c in result]
                    if not self.options.force_reinstall
                    else result
                )
        return result

    def _pinned_pool(
        self, name: NormalizedName, specifiers: Sequence[SpecifierSet]
    ) -> list[Version] | None:
        """The only versions a ``==`` pin among ``specifiers`` can match (those with its public
        version: PEP 440 ignores a local label the pin does not give), or None without a pin.
        Backtracking asks for a pinned project's candidates again with every range a candidate
        of another project declares; thousands of releases need not be checked each time."""
        for spec in specifiers:
            for one in spec:
                if one.operator != "==" or "*" in one.version:
                    continue
                try:
                    public = Version(Version(one.version).public)  # 1.31 == 1.31.0, as PEP 440
                except InvalidVersion:
                    continue
                by_public = self._by_public.get(name)
                if by_public is None:
                    by_public = {}
                    for version in self._versions(name):
                        by_public.setdefault(Version(version.public), []).append(version)
                    self._by_public[name] = by_public
                return by_public.get(public, [])
        return None

    def _installed_candidate(self, name: NormalizedName, spec: SpecifierSet) -> Candidate | None:
        if self.options.ignore_installed or self.options.force_reinstall:
            return None
        dist = self.options.installed.get(name)
        if dist is None or dist.editable or not spec.contains(dist.version, prereleases=True):
            return None
        return self._intern(
            ("installed", name, dist.version),
            lambda: Candidate(name=name, version=dist.version, installed=dist),
        )

    def _prefer_installed(self, name: NormalizedName) -> bool:
        if not self.options.upgrade:
            return True
        if self.options.upgrade_strategy == "eager":
            return False
        return name not in self.user_names


class _Reporter(BaseReporter):  # type: ignore[misc]
    pass


def resolve(
    requirements: Sequence[UserRequirement],
    constraints: Sequence[UserRequirement],
    links: LinkSource,
    metadata: MetadataSource,
    options: ResolveOptions,
    *,
    builder: SdistBuilder | None = None,
    direct: Sequence[DirectCandidate] = (),
    max_rounds: int = 200_000,
    look_ahead: bool = True,
    version_tables: VersionTables | None = None,
) -> Plan:
    """Choose one version of every project needed, newest compatible first; a project named
    by a direct reference is taken from there only. ``look_ahead`` fetches metadata ahead of
    the resolver (off when everything it may need has been fetched already);
    ``version_tables`` keeps each project's usable versions for the next resolution with the
    same links and ``options``."""
    env = dict(options.markers, extra="")
    constraint_map: dict[NormalizedName, list[UserRequirement]] = {}
    for c in constraints:
        if c.holds_in(env):  # as pip: a constraint whose marker does not hold is none
            constraint_map.setdefault(c.name, []).append(c)
    user_reqs: list[SpecRequirement] = []
    for r in requirements:
        if not r.holds_in(env):
            continue
        user_reqs.append(
            SpecRequirement(
                name=r.name,
                extras=frozenset(canonicalize_name(e) for e in r.requirement.extras),
                specifier=r.requirement.specifier,
                parent=None,
                text=str(r.requirement),
                hashes=r.hashes,
                user=True,
            )
        )
    user_names = frozenset(r.name for r in user_reqs)
    direct_names = frozenset(d.name for d in direct)
    links.prefetch(user_names - direct_names)  # a direct reference's name never goes to an index
    provider = Provider(
        links,
        metadata,
        builder or RefuseBuilds(),
        options,
        constraint_map,
        user_names,
        look_ahead,
        version_tables,
    )
    for source in direct:
        provider.direct[source.name] = Candidate(
            name=source.name,
            version=source.version,
            link=source.link,
            _meta=parse_metadata(source.metadata, source.link.filename),
        )
    for user_req in user_reqs:
        known = provider.user_specifiers.get(user_req.name, SpecifierSet())
        provider.user_specifiers[user_req.name] = known & user_req.specifier
    resolver: Resolver[Any, Any, str] = Resolver(provider, _Reporter())
    if provider.speculator is not None:
        provider.speculator.skip(direct_names)
        for user_req in user_reqs:
            if user_req.name not in direct_names:
                provider.speculator.walk(user_req.name, user_req.specifier, user_req.extras)
    try:
        result = resolver.resolve(user_reqs, max_rounds=max_rounds)
    except ResolutionImpossible as exc:
        raise _explain_conflict(exc, provider) from None
    except ResolutionTooDeep:
        raise ResolutionFailed(
            "resolution took too long: too many versions to backtrack through",
            hint="add tighter version bounds or constraints (-c) for the projects involved",
            reference="resolution-too-deep",
        ) from None
    finally:
        if provider.speculator is not None:
            provider.speculator.close()
    plan = _plan(result.mapping, provider, user_reqs, constraint_map)
    references = {d.name: d.reference for d in direct}
    return Plan(
        pins=tuple(
            dataclasses.replace(p, direct=references[p.name])
            if p.name in references and p.needs_install
            else p
            for p in plan.pins
        )
    )


def _plan(
    mapping: Mapping[str, Candidate],
    provider: Provider,
    user_reqs: Sequence[SpecRequirement],
    constraints: Mapping[NormalizedName, list[UserRequirement]],
) -> Plan:
    extras: dict[NormalizedName, set[str]] = {}
    for cand in mapping.values():
        if cand.extras:
            extras.setdefault(cand.name, set()).update(cand.extras)
    user_hashes: dict[NormalizedName, Hashes] = {}
    for r in user_reqs:
        user_hashes[r.name] = user_hashes.get(r.name, Hashes()) | r.hashes
    for name, cs in constraints.items():
        for c in cs:
            user_hashes[name] = user_hashes.get(name, Hashes()) | c.hashes
    user_names = {r.name for r in user_reqs}
    pins = []
    for identifier, cand in sorted(mapping.items()):
        if identifier == PYTHON_ID or cand.extras:
            continue
        meta = provider._metadata(cand)
        source: FileLink | AlreadyInstalled
        if cand.installed is not None:
            source = AlreadyInstalled(cand.installed)
        else:
            assert cand.link is not None
            source = cand.link
        pins.append(
            Pin(
                name=cand.name,
                version=cand.version,
                source=source,
                requires=meta.requires_dist,
                extras=frozenset(extras.get(cand.name, ())),
                requested=cand.name in user_names,
                expected_hashes=user_hashes.get(cand.name, Hashes()),
                metadata=meta.raw,
            )
        )
    return Plan(pins=tuple(pins))


def _explain_conflict(exc: ResolutionImpossible, provider: Provider) -> ResolutionFailed:
    causes = list(exc.causes)
    names = {c.requirement.identifier for c in causes}
    if len(names) == 1 and all(c.parent is None for c in causes):
        ident = next(iter(names))
        name = canonicalize_name(ident.split("[", 1)[0])
        available = sorted(provider._versions(name)) if ident != PYTHON_ID else []
        shown = ", ".join(str(v) for v in available) or "none"
        req_text = ", ".join(str(c.requirement) for c in causes)
        return ResolutionFailed(
            f"could not find a version that satisfies the requirement {req_text} "
            f"(from versions: {shown})",
            hint="check the name and version, and which indexes are configured",
            reference="no-matching-distribution",
        )
    lines = []
    for c in causes:
        who = "the user requested" if c.parent is None else f"{c.parent!r} depends on"
        lines.append(f"{who} {c.requirement}")
    return ResolutionFailed(
        "cannot install the requested set because these package versions have conflicting "
        "dependencies",
        context=("the conflict is caused by:", *sorted(set(lines))),
        hint="loosen the range of package versions you specified, or remove the pins that conflict",
    )
