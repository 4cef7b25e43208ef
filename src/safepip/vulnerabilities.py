"""The known-vulnerability gate: the policy over advisories, and its findings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import platformdirs
from packaging.utils import NormalizedName
from packaging.version import Version

from safepip.advisories import SEVERITIES, Advisory, AdvisoryDB, database_path, load_database
from safepip.errors import ConfigError
from safepip.models import Finding

__all__ = [
    "VulnerabilityPolicy",
    "decide",
    "findings_from_databases",
    "open_database",
    "safepip_cache_dir",
    "vulnerability_findings",
    "vulnerability_policy",
]

GATE = "vulnerabilities"


@dataclass(frozen=True, slots=True)
class VulnerabilityPolicy:
    block_severity: str | None = None  # refuse advisories at or above this severity
    block_unknown_severity: bool = False  # ...and those that give no severity
    require_fix: bool = False  # refuse any advisory that has a fixed version
    ignore: frozenset[str] = frozenset()  # advisory IDs or aliases
    database: str | None = None  # an OSV zip or compact file instead of the cached one
    online: bool = False  # also ask OSV's API (sends every name and version to it)
    online_url: str | None = None


def _severity_value(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in SEVERITIES:
        raise ConfigError(f"policy {where} block-severity must be one of {', '.join(SEVERITIES)}")
    return value.lower()


def _stricter(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return min(a, b, key=SEVERITIES.index)


def vulnerability_policy(
    trusted: Mapping[str, Any], project: Mapping[str, Any]
) -> VulnerabilityPolicy:
    """``[advisories]`` from the trusted policy; the project's may only make it stricter."""
    ignore = trusted.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(i, str) for i in ignore):
        raise ConfigError("policy [advisories] ignore must be a list of advisory IDs")
    for key in ("block-unknown-severity", "require-fix"):
        for section in (trusted, project):
            if not isinstance(section.get(key, False), bool):
                raise ConfigError(f"policy [advisories] {key} must be true or false")
    online = trusted.get("online", False)
    if not isinstance(online, bool):
        raise ConfigError("policy [advisories] online must be true or false")
    online_url = trusted.get("online-url")
    if online_url is not None and not isinstance(online_url, str):
        raise ConfigError("policy [advisories] online-url must be a URL")
    database = trusted.get("database")
    if database is not None and not isinstance(database, str):
        raise ConfigError("policy [advisories] database must be a file path")
    return VulnerabilityPolicy(
        block_severity=_stricter(
            _severity_value(trusted.get("block-severity"), "[advisories]"),
            _severity_value(project.get("block-severity"), "project [advisories]"),
        ),
        block_unknown_severity=bool(
            trusted.get("block-unknown-severity") or project.get("block-unknown-severity")
        ),
        require_fix=bool(trusted.get("require-fix") or project.get("require-fix")),
        ignore=frozenset(i.upper() for i in ignore),
        database=database,
        online=online,
        online_url=online_url,
    )


def decide(advisory: Advisory, policy: VulnerabilityPolicy) -> Literal["refuse", "warn"] | None:
    """``None`` for an ignored advisory; else refuse or warn as the policy says."""
    if {n.upper() for n in advisory.names()} & policy.ignore:
        return None
    if policy.require_fix and advisory.fixed_versions:
        return "refuse"
    if policy.block_severity is not None:
        if advisory.severity is None:
            return "refuse" if policy.block_unknown_severity else "warn"
        if SEVERITIES.index(advisory.severity) >= SEVERITIES.index(policy.block_severity):
            return "refuse"
    return "warn"


def advisory_finding(
    name: NormalizedName,
    version: Version,
    advisory: Advisory,
    action: Literal["refuse", "warn"],
    as_of: str,
) -> Finding:
    fixed = ", ".join(advisory.fixed_versions) or "none yet"
    severity = advisory.severity or "unknown severity"
    return Finding(
        gate=GATE,
        project=name,
        message=f"{name}=={version} has a known vulnerability {advisory.id} ({severity}; "
        f"fixed in {fixed}; advisories as of {as_of})",
        action=action,
        rule="known-vulnerability",
        hint=(
            f"upgrade to a fixed version, e.g. {name}>={advisory.fixed_versions[0]}"
            if advisory.fixed_versions
            else "no fixed version yet: consider an alternative"
        )
        + f'; or ignore it: [advisories] ignore = ["{advisory.id}"]',
        details=(
            ("id", advisory.id),
            ("aliases", ", ".join(advisory.aliases)),
            ("severity", advisory.severity or "unknown"),
            ("fixed-versions", ", ".join(advisory.fixed_versions)),
            ("summary", advisory.summary),
            ("url", advisory.url),
            ("database-as-of", as_of),
        ),
    )


def vulnerability_findings(
    pins: Iterable[tuple[NormalizedName, Version]], db: AdvisoryDB, policy: VulnerabilityPolicy
) -> list[Finding]:
    found: list[Finding] = []
    for name, version in pins:
        for advisory in db.affecting(name, version):
            action = decide(advisory, policy)
            if action is not None:
                found.append(advisory_finding(name, version, advisory, action, db.info.as_of))
    return found


def findings_from_databases(
    pins: Sequence[tuple[NormalizedName, Version]],
    databases: Sequence[AdvisoryDB],
    policy: VulnerabilityPolicy,
) -> list[Finding]:
    """Each advisory once per project, whichever database (offline, online) knows it first."""
    found: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for db in databases:
        for finding in vulnerability_findings(pins, db, policy):
            key = (finding.project, dict(finding.details)["id"])
            if key not in seen:
                seen.add(key)
                found.append(finding)
    return found


def safepip_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("safepip"))


def open_database(policy: VulnerabilityPolicy) -> AdvisoryDB | None:
    """The policy's database, or the one in safepip's cache, or ``None`` when there is none."""
    path = (
        Path(policy.database).expanduser()
        if policy.database
        else database_path(safepip_cache_dir())
    )
    if not policy.database and not path.is_file():
        return None
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = 0
    key = (str(path), stamp)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_database(path)
    return _LOADED[key]


_LOADED: dict[tuple[str, int], AdvisoryDB] = {}


def missing_database_finding() -> Finding:
    return Finding(
        gate=GATE,
        project="*",
        message="known vulnerabilities were not checked: there is no advisory database",
        action="warn",
        rule="no-advisory-database",
        hint="run `safepip advisories update` (or set [advisories] database in the policy)",
    )


def database_finding(db: AdvisoryDB, checked: int) -> Finding:
    info = db.info
    return Finding(
        gate=GATE,
        project="*",
        message=f"checked {checked} project(s) against {info.describe()}",
        action="report",
        rule="advisory-database",
        details=(
            ("source", info.source),
            ("as-of", info.as_of),
            ("fetched", info.fetched),
            ("count", str(info.count)),
        ),
    )
