"""The cooldown: pip's ``--uploaded-prior-to`` and the policy's ``min-release-age``."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from safepip.errors import ConfigError, SafepipError
from safepip.models import FileLink, Finding, IndexSource, Pin, UserRequirement

__all__ = [
    "CooldownLinks",
    "CooldownPolicy",
    "UploadTimeMissing",
    "check_upload_time_known",
    "cooldown_findings",
    "cooldown_policy",
    "pinned_names",
]

GATE = "cooldown"
Trust = Literal["trust", "refuse"]


class UploadTimeMissing(SafepipError):
    """``--uploaded-prior-to`` met a file whose index gives no upload time (pip stops too)."""

    reference = "upload-time-missing"


def check_upload_time_known(link: FileLink) -> None:
    """pip's rule for ``--uploaded-prior-to``: an index file without upload-time stops the run;
    local files are exempt."""
    if link.upload_time is None and not link.url.startswith("file:"):
        from safepip.net import redact_url

        raise UploadTimeMissing(
            f"Index {redact_url(link.index_url)} does not provide upload-time metadata "
            f"({link.filename}), which --uploaded-prior-to needs",
            hint="use an index that serves PEP 700 upload times, or drop --uploaded-prior-to",
        )


@dataclass(frozen=True, slots=True)
class CooldownPolicy:
    min_age: datetime.timedelta | None = None
    exempt: frozenset[NormalizedName] = frozenset()
    unknown_upload_time: Trust | None = None  # None: refuse for public indexes, trust internal

    @property
    def active(self) -> bool:
        return self.min_age is not None and self.min_age > datetime.timedelta(0)


def parse_age(value: Any, where: str) -> datetime.timedelta | None:
    """Whole days, or an ISO 8601 duration of days as pip takes (``P7D``)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return datetime.timedelta(days=value)
    if isinstance(value, str):
        match = re.fullmatch(r"P(\d+)D", value.strip(), re.ASCII)
        if match:
            return datetime.timedelta(days=int(match.group(1)))
    raise ConfigError(
        f"policy {where} min-release-age must be whole days or 'P<n>D', not {value!r}"
    )


def _trust_value(value: Any, where: str) -> Trust | None:
    if value is None:
        return None
    if value in ("trust", "refuse"):
        return value  # type: ignore[no-any-return]
    raise ConfigError(f'policy {where} unknown-upload-time must be "trust" or "refuse"')


def cooldown_policy(trusted: Mapping[str, Any], project: Mapping[str, Any]) -> CooldownPolicy:
    """``[cooldown]`` from the trusted policy; the project's may only lengthen it."""
    ages = [
        a
        for a in (
            parse_age(trusted.get("min-release-age"), "[cooldown]"),
            parse_age(project.get("min-release-age"), "project [cooldown]"),
        )
        if a is not None
    ]
    exempt = trusted.get("exempt", [])
    if not isinstance(exempt, list) or not all(isinstance(e, str) for e in exempt):
        raise ConfigError("policy [cooldown] exempt must be a list of project names")
    unknown = _trust_value(trusted.get("unknown-upload-time"), "[cooldown]")
    if _trust_value(project.get("unknown-upload-time"), "project [cooldown]") == "refuse":
        unknown = "refuse"
    return CooldownPolicy(
        min_age=max(ages) if ages else None,
        exempt=frozenset(canonicalize_name(e) for e in exempt),
        unknown_upload_time=unknown,
    )


def pinned_names(requirements: Iterable[UserRequirement]) -> frozenset[NormalizedName]:
    """Projects the user pinned to one version (requirements or constraints)."""
    out = set()
    for r in requirements:
        spec = list(r.requirement.specifier)
        if any(s.operator in ("==", "===") and "*" not in s.version for s in spec):
            out.add(r.name)
    return frozenset(out)


def _version_of(link: FileLink) -> Version | None:
    try:
        if link.is_wheel:
            return parse_wheel_filename(link.filename)[1]
        return parse_sdist_filename(link.filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def _source(link: FileLink, sources: Sequence[IndexSource]) -> IndexSource | None:
    return next((s for s in sources if s.url == link.index_url), None)


def _trusted(source: IndexSource | None) -> bool:
    if source is None:
        return False
    return source.internal or (
        source.kind == "find-links" and not source.url.startswith(("http:", "https:"))
    )


# A function giving, for a project, the versions that fix a vulnerability the vulnerability
# gate would refuse, with that advisory's ID.
FixesFor = Callable[[NormalizedName], Mapping[Version, str]]


def owns(link: FileLink, sources: Sequence[IndexSource]) -> bool:
    """The advisories are about PyPI's projects: the public index owns their names."""
    source = _source(link, sources)
    return source is not None and source.public and not source.internal


@dataclass(frozen=True, slots=True)
class Verdict:
    young: bool
    unknown: bool
    fixes: str | None  # the advisory this young release fixes, when the waiver applies


def judge_link(
    link: FileLink,
    policy: CooldownPolicy,
    sources: Sequence[IndexSource],
    fixes_for: FixesFor,
    name: NormalizedName,
    now: datetime.datetime,
) -> Verdict:
    assert policy.min_age is not None
    if link.upload_time is None:
        source = _source(link, sources)
        trust = policy.unknown_upload_time or ("trust" if _trusted(source) else "refuse")
        return Verdict(young=False, unknown=trust == "refuse", fixes=None)
    if now - link.upload_time >= policy.min_age:
        return Verdict(young=False, unknown=False, fixes=None)
    version = _version_of(link)
    fixed = fixes_for(name).get(version) if version is not None else None
    if fixed is not None and owns(link, sources):
        return Verdict(young=True, unknown=False, fixes=fixed)
    return Verdict(young=True, unknown=False, fixes=None)


class LinkSource(Protocol):
    def links_for(self, name: NormalizedName) -> Sequence[FileLink]: ...

    def prefetch(self, names: Iterable[NormalizedName]) -> None: ...


class CooldownLinks:
    """The resolver's view of the indexes with releases younger than the cooldown left out
    (except for exempt and pinned projects, and releases that fix a blocked vulnerability)."""

    def __init__(
        self,
        inner: LinkSource,
        policy: CooldownPolicy,
        sources: Sequence[IndexSource],
        pinned: frozenset[NormalizedName],
        fixes_for: FixesFor,
        now: datetime.datetime,
    ) -> None:
        self.inner = inner
        self.policy = policy
        self.sources = sources
        self.pinned = pinned
        self.fixes_for = fixes_for
        self.now = now

    def links_for(self, name: NormalizedName) -> Sequence[FileLink]:
        links = self.inner.links_for(name)
        if name in self.policy.exempt or name in self.pinned:
            return links
        out = []
        for link in links:
            verdict = judge_link(link, self.policy, self.sources, self.fixes_for, name, self.now)
            if not verdict.young or verdict.fixes:
                out.append(link)
        return out

    def prefetch(self, names: Iterable[NormalizedName]) -> None:
        self.inner.prefetch(names)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


def _days(delta: datetime.timedelta) -> str:
    return f"{delta.days} day(s)" if delta.days else f"{int(delta.total_seconds() // 3600)} hour(s)"


def cooldown_findings(
    pins: Sequence[Pin],
    policy: CooldownPolicy,
    sources: Sequence[IndexSource],
    fixes_for: FixesFor,
    now: datetime.datetime,
) -> list[Finding]:
    """Refuse a pin younger than the cooldown or of unknown age; say when a fix was let through."""
    if not policy.active:
        return []
    assert policy.min_age is not None
    found: list[Finding] = []
    for pin in pins:
        link = pin.source
        if not isinstance(link, FileLink) or pin.name in policy.exempt:
            continue
        verdict = judge_link(link, policy, sources, fixes_for, pin.name, now)
        exempt_hint = f'or exempt the project: [cooldown] exempt = ["{pin.name}"]'
        if verdict.unknown:
            found.append(
                Finding(
                    gate=GATE,
                    project=pin.name,
                    message=f"{pin.name}=={pin.version}: the index gives no upload time, so "
                    f"its age cannot be checked against min-release-age",
                    action="refuse",
                    rule="cooldown-unknown-upload-time",
                    hint='mark the index internal, set [cooldown] unknown-upload-time = "trust", '
                    + exempt_hint,
                )
            )
        elif verdict.young and link.upload_time is not None:
            age = now - link.upload_time
            if verdict.fixes:
                found.append(
                    Finding(
                        gate=GATE,
                        project=pin.name,
                        message=f"{pin.name}=={pin.version} is only {_days(age)} old, but it "
                        f"fixes {verdict.fixes}: the cooldown lets it through",
                        action="warn",
                        rule="cooldown-waived-for-fix",
                        details=(("fixes", verdict.fixes), ("age", _days(age))),
                    )
                )
                continue
            found.append(
                Finding(
                    gate=GATE,
                    project=pin.name,
                    message=f"{pin.name}=={pin.version} was uploaded {_days(age)} ago, less than "
                    f"the policy's min-release-age of {_days(policy.min_age)}",
                    action="refuse",
                    rule="cooldown",
                    hint="pin an older version, wait, " + exempt_hint,
                    details=(("uploaded", link.upload_time.isoformat()), ("age", _days(age))),
                )
            )
    return found
