"""``safepip audit``: known vulnerabilities in an environment, a requirements file or a pylock
file, without installing anything."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from safepip.advisories import AdvisoryDB
from safepip.errors import RequirementsError
from safepip.models import Finding
from safepip.vulnerabilities import VulnerabilityPolicy, findings_from_databases

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["AuditResult", "audit", "pins_from_file", "render_json", "render_text"]

Pinned = tuple[NormalizedName, Version]


@dataclass(frozen=True, slots=True)
class AuditResult:
    """What was checked, against which database, and what was found."""

    checked: tuple[Pinned, ...]
    findings: tuple[Finding, ...]
    databases: tuple[AdvisoryDB, ...]  # the offline one and/or OSV's API, in that order
    source: str

    @property
    def vulnerable(self) -> bool:
        return bool(self.findings)


def audit(
    pins: Sequence[Pinned],
    databases: Sequence[AdvisoryDB],
    policy: VulnerabilityPolicy,
    source: str,
) -> AuditResult:
    ordered = tuple(sorted(set(pins)))
    return AuditResult(
        checked=ordered,
        findings=tuple(findings_from_databases(ordered, databases, policy)),
        databases=tuple(databases),
        source=source,
    )


def _version(text: str, where: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise RequirementsError(f"{where}: {text!r} is not a valid version") from None


def _requirement_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            out.append((start, line))
    return out


def pins_from_requirements(path: Path, text: str) -> list[Pinned]:
    """``name==version`` lines (hashes and markers allowed); options are skipped."""
    pins: list[Pinned] = []
    for number, line in _requirement_lines(text):
        if line.startswith("-"):
            continue
        spec = " ".join(p for p in line.split() if not p.startswith("--hash"))
        where = f"{path}:{number}"
        try:
            req = Requirement(spec)
        except InvalidRequirement as exc:
            raise RequirementsError(f"{where}: {exc}") from None
        exact = [s for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version]
        if len(exact) != 1:
            raise RequirementsError(
                f"{where}: {req} is not pinned with ==; audit checks exact versions",
                hint="audit a lock (safepip lock) or an environment (--python) instead",
            )
        pins.append((canonicalize_name(req.name), _version(exact[0].version, where)))
    return pins


def pins_from_pylock(path: Path, text: str) -> list[Pinned]:
    """Every ``[[packages]]`` entry with a version (PEP 751)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RequirementsError(f"{path} is not valid TOML: {exc}") from None
    pins: list[Pinned] = []
    for entry in data.get("packages", []):
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry.get("version"):
            pins.append(
                (canonicalize_name(entry["name"]), _version(str(entry["version"]), str(path)))
            )
    return pins


def pins_from_file(path: Path) -> list[Pinned]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RequirementsError(f"cannot read {path}: {exc.strerror}") from None
    if path.suffix == ".toml" and path.name.startswith("pylock"):
        return pins_from_pylock(path, text)
    return pins_from_requirements(path, text)


def render_text(result: AuditResult) -> str:
    against = " and ".join(
        f"{db.info.describe()} (from {db.info.source})" for db in result.databases
    )
    lines = [f"Audited {len(result.checked)} project(s) from {result.source} against {against}."]
    if not result.findings:
        lines.append("No known vulnerabilities found.")
        return "\n".join(lines)
    projects = {f.project for f in result.findings}
    lines.append(
        f"Found {len(result.findings)} known vulnerabilit{'y' if len(result.findings) == 1 else 'ies'} "
        f"in {len(projects)} project(s):"
    )
    lines.append(f"{'Name':<24} {'Version':<12} {'ID':<22} {'Severity':<9} Fixed in")
    for f in result.findings:
        d = dict(f.details)
        version = next((str(v) for n, v in result.checked if n == f.project), "")
        lines.append(
            f"{f.project:<24} {version:<12} {d['id']:<22} {d['severity']:<9} "
            f"{d['fixed-versions'] or '-'}"
        )
    return "\n".join(lines)


def render_json(result: AuditResult) -> str:
    by_pin: dict[Pinned, list[dict[str, Any]]] = {pin: [] for pin in result.checked}
    versions = dict(result.checked)
    for f in result.findings:
        d = dict(f.details)
        pin = (canonicalize_name(f.project), versions[canonicalize_name(f.project)])
        by_pin[pin].append(
            {
                "id": d["id"],
                "aliases": [a for a in d["aliases"].split(", ") if a],
                "severity": d["severity"],
                "fix_versions": [v for v in d["fixed-versions"].split(", ") if v],
                "summary": d["summary"],
                "url": d["url"],
            }
        )
    databases = [
        {"source": i.source, "as_of": i.as_of, "fetched": i.fetched, "count": i.count}
        for i in (db.info for db in result.databases)
    ]
    doc = {
        "source": result.source,
        "database": databases[0],
        "databases": databases,
        "dependencies": [
            {"name": name, "version": str(version), "vulns": vulns}
            for (name, version), vulns in by_pin.items()
        ],
    }
    return json.dumps(doc, indent=2)
