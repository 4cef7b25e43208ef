"""Known vulnerabilities: the offline OSV database in safepip's cache, and which versions an
advisory affects."""

from __future__ import annotations

import datetime
import io
import json
import math
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from safepip.errors import ConfigError, FetchError

__all__ = [
    "DEFAULT_SOURCE",
    "Advisory",
    "AdvisoryDB",
    "DatabaseInfo",
    "advisories_from_doc",
    "cvss3_score",
    "database_path",
    "load_database",
    "refresh_database",
    "severity_label",
]

# OSV's export of every PyPI advisory (the same layout as the shared snapshot).
DEFAULT_SOURCE = "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"
SEVERITIES = ("low", "medium", "high", "critical")
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Range:
    introduced: str
    fixed: str | None = None
    last_affected: str | None = None


@dataclass(frozen=True, slots=True)
class Advisory:
    """One advisory about one project, reduced to what the gate and audit need."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    severity: str | None  # one of SEVERITIES, or None when the advisory gives none
    score: float | None
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]
    url: str = ""

    @property
    def fixed_versions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.fixed for r in self.ranges if r.fixed))

    def names(self) -> frozenset[str]:
        return frozenset((self.id, *self.aliases))

    def affects(self, version: Version) -> bool:
        for listed in self.versions:
            if _same_version(listed, version):
                return True
        return any(_in_range(r, version) for r in self.ranges)


def _parse(value: str) -> Version | None:
    try:
        return Version(value)
    except InvalidVersion:
        return None


def _same_version(listed: str, version: Version) -> bool:
    parsed = _parse(listed)
    return parsed is not None and parsed == version


def _in_range(r: Range, version: Version) -> bool:
    start = Version("0") if r.introduced == "0" else _parse(r.introduced)
    if start is None or version < start:
        return False
    if r.fixed is not None:
        end = _parse(r.fixed)
        return end is not None and version < end
    if r.last_affected is not None:
        end = _parse(r.last_affected)
        return end is not None and version <= end
    return True


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """Where the advisories came from and how fresh they are."""

    source: str
    as_of: str  # the newest advisory's modification date
    fetched: str
    count: int

    def describe(self) -> str:
        return f"{self.count} advisories as of {self.as_of or 'an unknown date'}"


class AdvisoryDB:
    """Advisories by normalised project name."""

    def __init__(self, by_name: Mapping[str, Sequence[Advisory]], info: DatabaseInfo) -> None:
        self.by_name = by_name
        self.info = info

    def affecting(self, name: NormalizedName, version: Version) -> list[Advisory]:
        return [a for a in self.by_name.get(name, ()) if a.affects(version)]

    def advisories(self, name: NormalizedName) -> Sequence[Advisory]:
        return self.by_name.get(name, ())


# -- severity ------------------------------------------------------------------------------

_CVSS3_WEIGHTS: dict[str, dict[str, float]] = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}


def _roundup(value: float) -> float:
    whole = round(value * 100000)
    if whole % 10000 == 0:
        return whole / 100000.0
    return (math.floor(whole / 10000) + 1) / 10.0


def cvss3_score(vector: str) -> float | None:
    """The CVSS 3.x base score of a vector such as ``CVSS:3.1/AV:N/AC:L/...``."""
    parts = dict(p.split(":", 1) for p in vector.split("/")[1:] if ":" in p)
    try:
        scope_changed = parts["S"] == "C"
        pr = {"N": 0.85, "L": 0.68 if scope_changed else 0.62, "H": 0.5 if scope_changed else 0.27}[
            parts["PR"]
        ]
        w = {k: _CVSS3_WEIGHTS[k][parts[k]] for k in _CVSS3_WEIGHTS}
    except KeyError:
        return None
    iss = 1 - (1 - w["C"]) * (1 - w["I"]) * (1 - w["A"])
    changed_impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15
    impact = changed_impact if scope_changed else 6.42 * iss
    exploitability = 8.22 * w["AV"] * w["AC"] * pr * w["UI"]
    if impact <= 0:
        return 0.0
    if scope_changed:
        return _roundup(min(1.08 * (impact + exploitability), 10))
    return _roundup(min(impact + exploitability, 10))


def severity_label(score: float) -> str | None:
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    if score > 0:
        return "low"
    return None


def _severity(doc: Mapping[str, Any]) -> tuple[str | None, float | None]:
    best: float | None = None
    for entry in doc.get("severity") or ():
        if isinstance(entry, dict) and str(entry.get("type", "")).startswith("CVSS_V3"):
            score = cvss3_score(str(entry.get("score", "")))
            if score is not None and (best is None or score > best):
                best = score
    if best is not None:
        return severity_label(best), best
    specific = doc.get("database_specific")
    if isinstance(specific, dict) and isinstance(specific.get("severity"), str):
        word = specific["severity"].lower()
        word = {"moderate": "medium"}.get(word, word)
        if word in SEVERITIES:
            return word, None
    return None, None


# -- reading OSV ---------------------------------------------------------------------------


def _advisory_url(doc: Mapping[str, Any]) -> str:
    for ref in doc.get("references") or ():
        if isinstance(ref, dict) and ref.get("type") == "ADVISORY" and ref.get("url"):
            return str(ref["url"])
    return ""


def _records(doc: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """Compact records, one per affected PyPI project, of one OSV document."""
    if doc.get("withdrawn"):
        return
    severity, score = _severity(doc)
    for affected in doc.get("affected") or ():
        package = affected.get("package") or {}
        if str(package.get("ecosystem", "")).lower() != "pypi" or not package.get("name"):
            continue
        ranges = []
        for r in affected.get("ranges") or ():
            if r.get("type") != "ECOSYSTEM":
                continue
            ranges.extend(_ranges_of(r.get("events") or ()))
        yield (
            canonicalize_name(str(package["name"])),
            {
                "id": str(doc.get("id", "")),
                "aliases": [str(a) for a in doc.get("aliases") or ()],
                "summary": str(doc.get("summary") or doc.get("details") or "")[:300],
                "severity": severity,
                "score": score,
                "ranges": ranges,
                "versions": [str(v) for v in affected.get("versions") or ()],
                "url": _advisory_url(doc),
            },
        )


def _ranges_of(events: Sequence[Mapping[str, str]]) -> list[list[str | None]]:
    out: list[list[str | None]] = []
    start: str | None = None
    for event in events:
        if "introduced" in event:
            if start is not None:
                out.append([start, None, None])
            start = str(event["introduced"])
        elif "fixed" in event and start is not None:
            out.append([start, str(event["fixed"]), None])
            start = None
        elif "last_affected" in event and start is not None:
            out.append([start, None, str(event["last_affected"])])
            start = None
    if start is not None:
        out.append([start, None, None])
    return out


def compact_from_zip(data: bytes, source: str) -> dict[str, Any]:
    """The compact database (what the cache keeps) from an OSV ``all.zip``."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    newest = ""
    count = 0
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        for member in archive.infolist():
            if not member.filename.endswith(".json") or member.file_size > 16 * 1024 * 1024:
                continue
            doc = json.loads(archive.read(member))
            if not isinstance(doc, dict):
                continue
            count += 1
            newest = max(newest, str(doc.get("modified", "")))
            for name, record in _records(doc):
                by_name.setdefault(name, []).append(record)
    except (zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise ConfigError(f"{source} is not an OSV advisory archive: {exc}") from None
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {
        "format": 1,
        "info": {"source": source, "as_of": newest[:10], "fetched": now, "count": count},
        "projects": by_name,
    }


def _advisory(r: Mapping[str, Any]) -> Advisory:
    return Advisory(
        id=r["id"],
        aliases=tuple(r["aliases"]),
        summary=r["summary"],
        severity=r["severity"],
        score=r["score"],
        ranges=tuple(Range(*x) for x in r["ranges"]),
        versions=tuple(r["versions"]),
        url=r.get("url", ""),
    )


def advisories_from_doc(doc: Mapping[str, Any]) -> list[tuple[str, Advisory]]:
    """The advisories, by project, of one OSV document (as the OSV API returns it)."""
    return [(name, _advisory(record)) for name, record in _records(doc)]


def _from_compact(data: Mapping[str, Any]) -> AdvisoryDB:
    info = DatabaseInfo(**data["info"])
    by_name = {
        name: tuple(_advisory(r) for r in records) for name, records in data["projects"].items()
    }
    return AdvisoryDB(by_name, info)


def database_path(cache_dir: Path) -> Path:
    return cache_dir / "advisories" / "osv-pypi.json"


def load_database(path: Path) -> AdvisoryDB:
    """A compact database file from the cache, or an OSV zip given by the user."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the advisory database {path}: {exc.strerror}",
            hint="run `safepip advisories update`, or fix [advisories] database in the policy",
        ) from None
    if raw[:2] == b"PK":
        return _from_compact(compact_from_zip(raw, str(path)))
    try:
        return _from_compact(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"the advisory database {path} is damaged ({exc})",
            hint="run `safepip advisories update` to rebuild it",
        ) from None


def _read_source(source: str, session: Any, timeout: float) -> bytes:
    if source.startswith(("https://", "http://")):
        import requests

        try:
            with session.get(source, timeout=timeout, stream=True) as resp:
                if resp.status_code != 200:
                    raise FetchError(f"{source} answered HTTP {resp.status_code}")
                chunks, total = [], 0
                for chunk in resp.iter_content(1024 * 1024):
                    total += len(chunk)
                    if total > MAX_ARCHIVE_BYTES:
                        raise FetchError(f"{source} is larger than {MAX_ARCHIVE_BYTES} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except requests.RequestException as exc:
            raise FetchError(
                f"cannot download advisories from {source}: {type(exc).__name__}",
                hint="check the network, or pass --from with a local copy of the archive",
            ) from None
    path = Path(source[len("file://") :] if source.startswith("file://") else source)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def refresh_database(
    source: str, cache_dir: Path, session: Any = None, timeout: float = 60.0
) -> DatabaseInfo:
    """Fetch an OSV archive (URL or path) and store it, compacted, in the cache."""
    compact = compact_from_zip(_read_source(source, session, timeout), source)
    path = database_path(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(compact, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)
    return DatabaseInfo(**compact["info"])
