"""The plan gates, run in order on the resolver's plan before any file is downloaded."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Collection, Mapping, Sequence

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from safepip.advisories import AdvisoryDB
from safepip.config import Settings
from safepip.cooldown import (
    CooldownLinks,
    CooldownPolicy,
    FixesFor,
    LinkSource,
    cooldown_findings,
    cooldown_policy,
    pinned_names,
)
from safepip.models import FileLink, Finding, IndexSource, Pin, Plan, ProjectPage
from safepip.report import Reporter
from safepip.status import status_findings
from safepip.typosquat import (
    ProjectFacts,
    facts_from_uploads,
    judge,
    load_popular_names,
    typosquat_policy,
)
from safepip.vulnerabilities import (
    VulnerabilityPolicy,
    database_finding,
    decide,
    findings_from_databases,
    missing_database_finding,
    open_database,
    vulnerability_policy,
)

__all__ = [
    "gate_lock",
    "known_names",
    "plan_findings",
    "project_facts",
    "source_of",
    "with_cooldown",
]

PagesFor = Callable[[NormalizedName], Sequence[ProjectPage]]


def source_of(link: FileLink, sources: Sequence[IndexSource]) -> IndexSource | None:
    """The configured source a file was listed by."""
    for source in sources:
        if source.url == link.index_url:
            return source
    return None


def is_trusted_source(source: IndexSource | None) -> bool:
    """The user's own projects: an index the policy marks internal, or a local directory."""
    if source is None:
        return False
    if source.internal:
        return True
    return source.kind == "find-links" and not source.url.startswith(("http:", "https:"))


def _version_of(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, ValueError):
        return None


def project_facts(page: ProjectPage) -> ProjectFacts:
    """A project's first upload and release count, from one index's page."""
    versions, uploads = [], []
    for link in page.files:
        version = _version_of(link.filename)
        if version is not None:
            versions.append(version)
            uploads.append(link.upload_time)
    return facts_from_uploads(versions, uploads)


def _page_serving(pin: Pin, pages: Sequence[ProjectPage]) -> ProjectPage | None:
    if not isinstance(pin.source, FileLink):
        return None
    for page in pages:
        if page.index_url == pin.source.index_url:
            return page
    return None


def typosquat_findings(
    settings: Settings,
    plan: Plan,
    pages_for: PagesFor,
    installed: Collection[NormalizedName],
    now: datetime.datetime,
) -> list[Finding]:
    policy = typosquat_policy(
        settings.policy.section("typosquat"), settings.policy.project_section("typosquat")
    )
    if not policy.enabled:
        return []
    popular = load_popular_names(policy.popular_projects)
    found: list[Finding] = []
    for pin in plan.to_install():
        assert isinstance(pin.source, FileLink)
        if pin.name in installed or pin.name in policy.allow:
            continue
        if is_trusted_source(source_of(pin.source, settings.sources)):
            continue
        resemblance = popular.resemblance(pin.name)
        if resemblance is None:
            continue
        page = _page_serving(pin, pages_for(pin.name))
        facts = project_facts(page) if page is not None else ProjectFacts(None, 0)
        found.append(judge(resemblance, facts, policy, now))
    return found


def plan_findings(
    settings: Settings,
    plan: Plan,
    pages_for: PagesFor,
    installed: Collection[NormalizedName],
    now: datetime.datetime | None = None,
) -> list[Finding]:
    """Every plan gate's findings for the pins to install. ``installed``: the names already in
    the environment (or the lock being updated); a pylock.toml installed from counts too."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    installed = known_names(installed, [lock.path for lock in settings.locks])
    found: list[Finding] = []
    for pin in plan.to_install():
        found.extend(status_findings(pin, pages_for(pin.name)))
    found.extend(typosquat_findings(settings, plan, pages_for, installed, now))
    policy = _cooldown_policy(settings)
    found.extend(
        cooldown_findings(plan.to_install(), policy, settings.sources, _fixes_for(settings), now)
    )
    found.extend(advisory_findings(settings, plan))
    return found


def _cooldown_policy(settings: Settings) -> CooldownPolicy:
    return cooldown_policy(
        settings.policy.section("cooldown"), settings.policy.project_section("cooldown")
    )


def _vulnerability_policy(settings: Settings) -> VulnerabilityPolicy:
    return vulnerability_policy(
        settings.policy.section("advisories"), settings.policy.project_section("advisories")
    )


def _fixes_for(settings: Settings) -> FixesFor:
    """For each project, the releases that fix a vulnerability the gate would refuse."""
    policy = _vulnerability_policy(settings)
    loaded: list[AdvisoryDB | None] = []

    def fixes(name: NormalizedName) -> Mapping[Version, str]:
        if not loaded:
            loaded.append(open_database(policy))
        db = loaded[0]
        if db is None:
            return {}
        blocking = [a for a in db.advisories(name) if decide(a, policy) == "refuse"]
        out: dict[Version, str] = {}
        for advisory in blocking:
            for fixed in advisory.fixed_versions:
                try:
                    version = Version(fixed)
                except InvalidVersion:
                    continue
                if not any(b.affects(version) for b in blocking):
                    out.setdefault(version, advisory.id)
        return out

    return fixes


def with_cooldown(settings: Settings, links: LinkSource) -> LinkSource:
    """The resolver's links, less releases younger than the policy's min-release-age."""
    policy = _cooldown_policy(settings)
    if not policy.active:
        return links
    return CooldownLinks(
        links,
        policy,
        settings.sources,
        pinned_names((*settings.requirements, *settings.constraints)),
        _fixes_for(settings),
        datetime.datetime.now(datetime.timezone.utc),
    )


def advisory_findings(settings: Settings, plan: Plan) -> list[Finding]:
    """Known vulnerabilities of the pins to install, from the offline database."""
    pins = [(p.name, p.version) for p in plan.to_install()]
    if not pins:
        return []
    policy = _vulnerability_policy(settings)
    from safepip.osvonline import online_database

    databases = [
        db for db in (open_database(policy), online_database(settings.net, policy, pins)) if db
    ]
    if not databases:
        return [missing_database_finding()]
    found = findings_from_databases(pins, databases, policy)
    found.extend(database_finding(db, len(pins)) for db in databases)
    return found


def known_names(
    installed: Collection[NormalizedName], lock_paths: Sequence[str]
) -> frozenset[NormalizedName]:
    """Names the user already has: installed, or pinned in a lock file."""
    from safepip.lock import read_existing_pins

    names = set(installed)
    for path in lock_paths:
        names.update(read_existing_pins(path))
    return frozenset(names)


def union_plan(plans: Sequence[Plan]) -> Plan:
    """One pin per project version across the plans of a lock's environments."""
    seen: dict[tuple[NormalizedName, Version], Pin] = {}
    for plan in plans:
        for pin in plan.pins:
            seen.setdefault((pin.name, pin.version), pin)
    return Plan(pins=tuple(seen.values()))


def gate_lock(
    settings: Settings,
    plans: Sequence[Plan],
    links: object,
    existing_lock: str,
    reporter: Reporter,
) -> Plan:
    """The plan gates for ``safepip lock``: names already in the lock being updated are not new.
    Refuses (exit 3) as an install would; returns every pin of every environment."""
    from safepip.pipeline import settle

    plan = union_plan(plans)
    pages_for = getattr(links, "project_pages", None)
    if pages_for is None:  # a link source without pages: gate on what the pins carry
        pages_for = _no_pages
    findings = plan_findings(settings, plan, pages_for, known_names((), [existing_lock]))
    settle(findings, reporter)
    return plan


def _no_pages(name: NormalizedName) -> Sequence[ProjectPage]:
    return ()
