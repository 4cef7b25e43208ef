"""Pure rules that decide which index may serve each project: who owns a name, mirrors, pins,
PEP 708, and the refusals for dependency confusion. No I/O: pages and policy in, a decision out."""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from packaging.specifiers import SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from safepip.models import FileLink, IndexSource, ProjectPage

__all__ = [
    "Allowed",
    "Decision",
    "IndexDeclaration",
    "IndexOffer",
    "IndexPin",
    "IndexPolicy",
    "Refused",
    "SourcePage",
    "decide",
    "merge_pages",
    "sources_to_look_up",
]

OWNER_RULE = "a name any specific index lists is taken only from specific indexes"


@dataclass(frozen=True, slots=True)
class IndexDeclaration:
    """One ``[indexes.NAME]`` table of the user's policy."""

    name: str
    url: str
    mirror: bool = False  # a mirror of the public index: it plays the public role
    explicit: bool = False  # serves only the projects pinned to it
    internal: bool = False  # its projects are the user's own


@dataclass(frozen=True, slots=True)
class IndexPin:
    """One ``[index-pins]`` line: projects matching ``pattern`` come only from ``index``."""

    pattern: str  # a normalized name, or a glob over normalized names
    index: str  # an index name, or a URL
    versions: SpecifierSet | None = None
    origin: str = "policy"

    @property
    def is_glob(self) -> bool:
        return any(c in self.pattern for c in "*?[")

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern) if self.is_glob else name == self.pattern

    @property
    def line(self) -> str:
        return pin_line(self.pattern, self.index, self.versions)


def pin_line(pattern: str, index: str, versions: SpecifierSet | str | None = None) -> str:
    """The line of ``[index-pins]`` that pins ``pattern`` to ``index``, as a user would write it."""
    if versions:
        return f'"{pattern}" = {{ index = "{index}", versions = "{versions}" }}'
    return f'"{pattern}" = "{index}"'


@dataclass(frozen=True, slots=True)
class IndexPolicy:
    """The index part of the policy, checked and typed (see ``indexpolicy.read_index_policy``)."""

    indexes: tuple[IndexDeclaration, ...] = ()
    # In the order they apply: the user's pins before the project's, exact names before globs.
    pins: tuple[IndexPin, ...] = ()
    allow: tuple[str, ...] = ()  # names or globs merged across every index, as pip does
    strict: bool = False
    warnings: tuple[str, ...] = ()  # what a project policy tried and was not allowed

    def pin_for(self, name: NormalizedName) -> IndexPin | None:
        return next((p for p in self.pins if p.matches(name)), None)

    def allow_listed(self, name: NormalizedName) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.allow)

    def declaration(self, name: str) -> IndexDeclaration | None:
        return next((d for d in self.indexes if d.name == name), None)

    def is_explicit(self, source: IndexSource) -> bool:
        decl = self.declaration(source.name) if source.name else None
        return decl is not None and decl.explicit


@dataclass(frozen=True, slots=True)
class SourcePage:
    """What one index lists for one project."""

    source: IndexSource
    page: ProjectPage


@dataclass(frozen=True, slots=True)
class IndexOffer:
    """One index's offer for a project, as shown in decisions and refusals."""

    index: str  # the policy's name, or the URL with credentials redacted
    role: str  # "public", "specific" or "explicit"
    files: tuple[FileLink, ...] = field(repr=False)

    @property
    def versions(self) -> tuple[str, ...]:
        """Every version the index lists, worked out only when shown (a large project's page
        lists tens of thousands of files, and most runs show no offer)."""
        return _versions(self.files)

    def describe(self) -> str:
        shown = ", ".join(self.versions) if self.versions else "nothing"
        return f"{self.index} ({self.role}) offers {shown}"


@dataclass(frozen=True, slots=True)
class Allowed:
    """The files that may serve ``project``, the indexes they come from, and why."""

    project: NormalizedName
    links: tuple[FileLink, ...]
    indexes: tuple[str, ...]
    rule: str  # stable kebab-case name
    reason: str  # one sentence, including the policy line or rule that settles it
    offers: tuple[IndexOffer, ...] = ()


@dataclass(frozen=True, slots=True)
class Refused:
    """``project`` cannot be taken from any index safely: every offer, the rule, the fix."""

    project: NormalizedName
    rule: str
    reason: str
    offers: tuple[IndexOffer, ...]
    settling_line: str  # the one policy line that settles it

    @property
    def hint(self) -> str:
        return f"if that is the project you mean, add under [index-pins] in your policy: {self.settling_line}"


Decision = Allowed | Refused


def index_label(source: IndexSource) -> str:
    return source.name or source.display


def _pin_target(source: IndexSource) -> str:
    return source.name or source.url


def _role(source: IndexSource, policy: IndexPolicy) -> str:
    if source.public:
        return "public"
    return "explicit" if policy.is_explicit(source) else "specific"


def _version_of(link: FileLink) -> Version | None:
    try:
        if link.is_wheel:
            return _wheel_version(link.filename.rsplit("-", 3)[0])
        return parse_sdist_filename(link.filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


@functools.lru_cache(maxsize=4096)
def _wheel_version(stem: str) -> Version:
    """The version of the wheels named ``stem-TAGS.whl`` (name, version, build). The tags never
    make a wheel's name invalid, so one parse serves every wheel of a release (a large project
    lists thousands, for every platform)."""
    return parse_wheel_filename(stem + "-py3-none-any.whl")[1]


def _versions(links: Iterable[FileLink]) -> tuple[str, ...]:
    found = {v for v in (_version_of(link) for link in links) if v is not None}
    return tuple(str(v) for v in sorted(found))


def _offer(sp: SourcePage, policy: IndexPolicy) -> IndexOffer:
    return IndexOffer(index_label(sp.source), _role(sp.source, policy), sp.page.files)


def merge_pages(pages: Sequence[ProjectPage]) -> list[FileLink]:
    """Every file every page lists, the first page winning for a repeated filename."""
    seen: set[str] = set()
    out: list[FileLink] = []
    for page in pages:
        for link in page.files:
            if link.filename in seen:
                continue
            seen.add(link.filename)
            out.append(link)
    return out


def sources_to_look_up(
    name: NormalizedName, sources: Sequence[IndexSource], policy: IndexPolicy
) -> tuple[IndexSource, ...]:
    """The indexes to ask about ``name``: only the pinned index for a pinned project, else every
    index but the explicit ones (they serve only the projects pinned to them)."""
    pin = policy.pin_for(name)
    if pin is not None:
        return tuple(s for s in sources if pin.index == s.name or _same_url(pin.index, s.url))
    return tuple(s for s in sources if not policy.is_explicit(s))


def _page_url(source: IndexSource, name: str) -> str:
    return _norm_url(source.url.rstrip("/") + "/" + name + "/")


def _same_url(a: str, b: str) -> bool:
    return "://" in a and _norm_url(a) == _norm_url(b)


def _norm_url(url: str) -> str:
    return url.strip().rstrip("/").lower()


def decide(name: NormalizedName, pages: Sequence[SourcePage], policy: IndexPolicy) -> Decision:
    """Which files may serve ``name``, given what every index looked up lists for it."""
    offers = tuple(_offer(sp, policy) for sp in pages)
    listing = [sp for sp in pages if sp.page.files]
    pin = policy.pin_for(name)
    if pin is not None:
        return _pinned(name, pin, listing, offers)
    if policy.allow_listed(name):
        return _merged(name, listing, offers, "allow-listed", f"{name} is on the allow-list")
    if not any(not sp.source.public for sp in listing):
        return _merged(
            name,
            listing,
            offers,
            "public",
            "no specific index lists it; the public index serves it",
        )
    if _alternate_locations_agree(name, listing):
        return _merged(
            name,
            listing,
            offers,
            "pep708-alternate-locations",
            "every index serving it lists the others in alternate-locations (PEP 708)",
        )
    return _by_ownership(name, listing, offers, policy)


def _pinned(
    name: NormalizedName,
    pin: IndexPin,
    listing: Sequence[SourcePage],
    offers: tuple[IndexOffer, ...],
) -> Allowed:
    links = merge_pages([sp.page for sp in listing])
    if pin.versions is not None:
        spec = pin.versions
        links = [
            link
            for link in links
            if (v := _version_of(link)) is not None and spec.contains(v, prereleases=True)
        ]
    return Allowed(
        project=name,
        links=tuple(links),
        indexes=tuple(dict.fromkeys(index_label(sp.source) for sp in listing)),
        rule="pinned",
        reason=f"pinned by {pin.origin}: [index-pins] {pin.line}; no other index was asked",
        offers=offers,
    )


def _merged(
    name: NormalizedName,
    listing: Sequence[SourcePage],
    offers: tuple[IndexOffer, ...],
    rule: str,
    reason: str,
) -> Allowed:
    return Allowed(
        project=name,
        links=tuple(merge_pages([sp.page for sp in listing])),
        indexes=tuple(dict.fromkeys(index_label(sp.source) for sp in listing)),
        rule=rule,
        reason=reason,
        offers=offers,
    )


def _alternate_locations_agree(name: str, listing: Sequence[SourcePage]) -> bool:
    if len(listing) < 2 or not all(sp.page.alternate_locations for sp in listing):
        return False
    urls = {_page_url(sp.source, name) for sp in listing}
    for sp in listing:
        declared = {_norm_url(u) for u in sp.page.alternate_locations}
        declared.add(_page_url(sp.source, name))
        if not urls <= declared:
            return False
    return True


def _tracks_public(name: str, sp: SourcePage, public: Sequence[SourcePage]) -> bool:
    tracked = {_norm_url(u) for u in sp.page.tracks}
    return any(_page_url(p.source, name) in tracked for p in public)


def _public_copy_test(public: Sequence[SourcePage]) -> Callable[[FileLink], bool]:
    """Whether a file is a copy of a public file: the same sha256 or, when its index does not
    say its sha256 (an md5-only private index), the same filename, since a public filename is
    never reused for other bytes."""
    digests = {f.sha256 for sp in public for f in sp.page.files if f.sha256}
    filenames = {f.filename for sp in public for f in sp.page.files}

    def is_copy(link: FileLink) -> bool:
        return link.sha256 in digests if link.sha256 else link.filename in filenames

    return is_copy


@dataclass(frozen=True, slots=True)
class _Owner:
    sp: SourcePage
    own: tuple[FileLink, ...]  # files no public index lists byte for byte
    copies: tuple[FileLink, ...]  # files byte-identical to a public index's


def _by_ownership(
    name: NormalizedName,
    listing: Sequence[SourcePage],
    offers: tuple[IndexOffer, ...],
    policy: IndexPolicy,
) -> Decision:
    public = [sp for sp in listing if sp.source.public]
    is_copy = _public_copy_test(public)
    owners: list[_Owner] = []
    mirrors: list[SourcePage] = []
    tracking: list[SourcePage] = []
    for sp in listing:
        if sp.source.public:
            continue
        if _tracks_public(name, sp, public):
            tracking.append(sp)
            continue
        own = tuple(f for f in sp.page.files if not is_copy(f))
        copies = tuple(f for f in sp.page.files if is_copy(f))
        if own:
            owners.append(_Owner(sp, own, copies))
        else:
            mirrors.append(sp)
    if not owners:
        rule, reason = (
            ("pep708-tracks", "the specific index tracks the public project (PEP 708)")
            if tracking
            else (
                "mirror-merged",
                "the specific indexes listing it hold only byte-identical copies of public "
                "files, so their versions merge with the public ones",
            )
        )
        return _merged(name, [*public, *tracking, *mirrors], offers, rule, reason)
    for owner in owners:
        refusal = _confusion_signature(name, owner, offers)
        if refusal is not None:
            return refusal
    if len({frozenset(f.sha256 or f.url for f in o.own) for o in owners}) > 1:
        return Refused(
            project=name,
            rule="specific-indexes-differ",
            reason=f"{len(owners)} specific indexes list {name} with different files; "
            f"which one is yours cannot be told ({OWNER_RULE})",
            offers=offers,
            settling_line=pin_line(name, _pin_target(owners[0].sp.source)),
        )
    owner_sha = {f.sha256 for o in owners for f in o.sp.page.files if f.sha256}
    others = [sp for sp in listing if all(sp is not o.sp for o in owners)]
    differing = [
        sp for sp in others if any(not f.sha256 or f.sha256 not in owner_sha for f in sp.page.files)
    ]
    if policy.strict and differing:
        return Refused(
            project=name,
            rule="strict-different-files",
            reason=f"strict: {name} is listed with different files on "
            f"{index_label(owners[0].sp.source)} and {index_label(differing[0].source)}",
            offers=offers,
            settling_line=pin_line(name, _pin_target(owners[0].sp.source)),
        )
    ignored = "; ignored: " + ", ".join(
        f"{index_label(sp.source)} ({', '.join(_versions(sp.page.files))})" for sp in differing
    )
    return Allowed(
        project=name,
        links=tuple(merge_pages([o.sp.page for o in owners])),
        indexes=tuple(dict.fromkeys(index_label(o.sp.source) for o in owners)),
        rule="specific-owner",
        reason=f"{index_label(owners[0].sp.source)} lists its own builds, and {OWNER_RULE}"
        + (ignored if differing else ""),
        offers=offers,
    )


def _confusion_signature(
    name: NormalizedName, owner: _Owner, offers: tuple[IndexOffer, ...]
) -> Refused | None:
    """Refused when the index lists public-identical files of a version it has no own build of
    (a "virtual" repository proxying the public index beside an internal project)."""
    own_versions = {v.public for v in (_version_of(f) for f in owner.own) if v is not None}
    stray = sorted(
        {
            v
            for v in (_version_of(f) for f in owner.copies)
            if v is not None and v.public not in own_versions
        }
    )
    if not stray:
        return None
    label = index_label(owner.sp.source)
    own_sorted = sorted({v for v in (_version_of(f) for f in owner.own) if v is not None})
    return Refused(
        project=name,
        rule="confusion-signature",
        reason=f"{label} lists its own {name} ({', '.join(str(v) for v in own_sorted)}) beside "
        f"byte-identical copies of public {', '.join(str(v) for v in stray)}, which it has no "
        "build of: the public project is mixed into a private name (dependency confusion)",
        offers=offers,
        settling_line=pin_line(name, _pin_target(owner.sp.source), _own_only(own_sorted, stray)),
    )


def _own_only(own: Sequence[Version], stray: Sequence[Version]) -> str:
    """A version specifier that admits the index's own builds and none of the stray copies."""
    if not own:
        return ",".join(f"!={v}" for v in stray)
    if len(own) == 1:
        return f"=={own[0]}"
    top = own[-1]
    return ",".join([f"<={top}", *(f"!={v}" for v in stray if v < top)])
