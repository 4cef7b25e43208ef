"""Publisher attestations (PEP 740): fetch each file's provenance, verify it offline against the
publisher identity safepip expects, and turn the outcome into findings before pip runs.

The expected identity comes from the lock or the user's policy, never from what the index serves.
Verification uses the optional ``pypi-attestations`` package (``safepip[attest]``), imported only
when needed; its Sigstore trust root is the one it ships, kept under safepip's cache directory
and refreshed online only on request."""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import os
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from packaging.utils import NormalizedName, canonicalize_name

from safepip.config import Settings
from safepip.errors import PolicyRefusal, UsageError
from safepip.models import FileLink, Finding, ProjectPage, VerifiedFile
from safepip.net import origin_of, redact_url, release_unread

__all__ = [
    "Attested",
    "Expectations",
    "Identity",
    "Rejected",
    "Unattested",
    "attestation_findings",
    "attested_identities",
    "check_files",
    "expectations_from",
    "fetch_provenance",
    "file_outcome",
    "refresh_trust_root",
    "verifier_available",
    "verify_provenance",
]

MAX_PROVENANCE_BYTES = 2 * 1024 * 1024
EXTRA_HINT = (
    "install the optional extra into safepip's own environment: pip install 'safepip[attest]'"
)
_KINDS = {"github": "GitHub", "gitlab": "GitLab", "google": "Google", "circleci": "CircleCI"}


@dataclass(frozen=True, slots=True)
class Identity:
    """A Trusted Publisher identity: its kind (GitHub, GitLab, Google, CircleCI) and claims
    (repository, workflow, environment, email, ...), as PEP 740's publisher object names them."""

    kind: str
    claims: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> Identity:
        kind = data.get("kind")
        if not isinstance(kind, str) or kind.lower() not in _KINDS:
            raise UsageError(
                f"{where}: an attestation identity needs kind = one of "
                + ", ".join(sorted(_KINDS.values())),
                reference="config",
            )
        claims = []
        for key, value in data.items():
            if key == "kind" or value is None:
                continue
            if not isinstance(value, str):
                raise UsageError(f"{where}: identity claim {key!r} must be a string")
            claims.append((str(key), value))
        return cls(_KINDS[kind.lower()], tuple(sorted(claims)))

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, **dict(self.claims)}

    def to_json(self) -> str:
        """One line of JSON, ``kind`` first (the form a hashed requirements file records)."""
        return json.dumps(self.as_dict(), separators=(", ", ": "))

    @classmethod
    def from_json(cls, text: str, where: str) -> Identity:
        try:
            data = json.loads(text)
        except ValueError:
            raise UsageError(f"{where}: the attestation identity is not JSON") from None
        if not isinstance(data, dict):
            raise UsageError(f"{where}: the attestation identity must be a JSON object")
        return cls.from_mapping(data, where)

    def matches(self, served: Identity) -> bool:
        """Whether a served identity is this one: the same kind and every claim pinned here
        equal (a pin may leave out claims it does not care about, such as an environment)."""
        have = dict(served.claims)
        return self.kind == served.kind and all(have.get(k) == v for k, v in self.claims)

    @property
    def display(self) -> str:
        claims = dict(self.claims)
        main = claims.pop("repository", None) or claims.pop("email", None) or ""
        rest = ", ".join(f"{k} {v}" for k, v in sorted(claims.items()))
        return f"{self.kind} {main}".strip() + (f" ({rest})" if rest else "")


@dataclass(frozen=True, slots=True)
class Attested:
    """Every attestation in the provenance verified, all by this one identity."""

    filename: str
    identity: Identity


@dataclass(frozen=True, slots=True)
class Unattested:
    """No provenance to verify: the index serves none for this file, or could not be asked."""

    filename: str
    reason: str
    served_by_index: bool = False  # True when the index says it serves provenance in general


@dataclass(frozen=True, slots=True)
class Rejected:
    """Provenance was served but does not verify (or names an identity other than expected)."""

    filename: str
    reason: str
    served: Identity | None = None


ProvenanceOutcome = Attested | Unattested | Rejected


@dataclass(frozen=True, slots=True)
class Expectations:
    """What the user requires: identities pinned per project, and which projects must be attested."""

    identities: Mapping[NormalizedName, Identity] = field(default_factory=dict)
    required: tuple[str, ...] = ()  # project-name globs; "*" for every project
    sources: Mapping[NormalizedName, str] = field(default_factory=dict)  # where each pin came from

    def requires(self, name: NormalizedName) -> bool:
        return name in self.identities or any(fnmatch.fnmatchcase(name, g) for g in self.required)

    @property
    def active(self) -> bool:
        return bool(self.identities or self.required)


def verifier_available() -> bool:
    try:
        import pypi_attestations  # noqa: F401
    except ImportError:
        return False
    return True


def _parse_identities(table: object, where: str) -> dict[NormalizedName, Identity]:
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        raise UsageError(f"{where} must be a table of project = {{ kind = ..., ... }}")
    out = {}
    for project, data in table.items():
        if not isinstance(data, Mapping):
            raise UsageError(f"{where}.{project} must be a table with kind and claims")
        out[canonicalize_name(str(project))] = Identity.from_mapping(data, f"{where}.{project}")
    return out


def _parse_required(value: object, where: str) -> tuple[str, ...]:
    if value is None or value is False:
        return ()
    if value is True:
        return ("*",)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(canonicalize_name(v) if "*" not in v else v.lower() for v in value)
    raise UsageError(f"{where} must be true, false or a list of project names (globs allowed)")


def expectations_from(
    policy_section: Mapping[str, Any],
    project_section: Mapping[str, Any],
    *,
    require_flag: bool,
    locked: Mapping[NormalizedName, Identity] | None = None,
) -> Expectations:
    """Merge the user's policy, the project's (which may only add requirements and pins), the
    command-line flag and identities pinned in a lock (which win: they are what was reviewed)."""
    identities = _parse_identities(policy_section.get("identities"), "[attestations.identities]")
    sources = dict.fromkeys(identities, "policy")
    for name, ident in _parse_identities(
        project_section.get("identities"), "project [attestations.identities]"
    ).items():
        identities.setdefault(name, ident)
        sources.setdefault(name, "project policy")
    for name, ident in (locked or {}).items():
        identities[name] = ident
        sources[name] = "lock"
    required = (
        *_parse_required(policy_section.get("require"), "[attestations] require"),
        *_parse_required(project_section.get("require"), "project [attestations] require"),
        *(("*",) if require_flag else ()),
    )
    return Expectations(identities, tuple(dict.fromkeys(required)), sources)


def _integrity_url(link: FileLink, name: str, version: str) -> str | None:
    """PyPI's Integrity API serves provenance for files its Simple API does not annotate."""
    from pip._internal.models.index import PyPI

    if link.index_url.rstrip("/") != PyPI.simple_url.rstrip("/"):
        return None
    quoted = urllib.parse.quote(link.filename)
    return f"{PyPI.url.rstrip('/')}/integrity/{name}/{version}/{quoted}/provenance"


def fetch_provenance(
    session: requests.Session, url: str, timeout: float
) -> bytes | Unattested | Rejected:
    """The provenance object's bytes; an outcome when there is none or it cannot be had.

    No redirect is followed to another origin (provenance comes from the index that lists
    the file), and at most :data:`MAX_PROVENANCE_BYTES` are read."""
    name = url.rsplit("/", 1)[-1]
    current = url
    for _ in range(5):
        try:
            resp = session.get(current, timeout=timeout, stream=True, allow_redirects=False)
        except requests.RequestException as exc:
            return Unattested(name, f"cannot fetch provenance: {type(exc).__name__}")
        with resp:
            if resp.is_redirect:
                target = urllib.parse.urljoin(current, resp.headers.get("Location", ""))
                if origin_of(target) != origin_of(url):
                    return Rejected(
                        name, f"provenance redirects to another host ({redact_url(target)})"
                    )
                current = target
                continue
            if resp.status_code != 200:
                release_unread(resp, timeout)
            if resp.status_code == 404:
                return Unattested(name, "the index serves no provenance for it")
            if resp.status_code != 200:
                return Unattested(name, f"the index answered HTTP {resp.status_code} for it")
            body = b""
            for chunk in resp.iter_content(64 * 1024):
                body += chunk
                if len(body) > MAX_PROVENANCE_BYTES:
                    return Rejected(name, "provenance object is larger than allowed")
            return body
    return Rejected(name, "provenance URL redirects too often")


@contextlib.contextmanager
def _trust_root_home(cache_dir: Path | None) -> Iterator[None]:
    """Point the verifier's trust-root storage (platformdirs) at safepip's own cache."""
    if cache_dir is None:
        yield
        return
    keys = ("XDG_DATA_HOME", "XDG_CACHE_HOME")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["XDG_DATA_HOME"] = str(cache_dir / "data")
    os.environ["XDG_CACHE_HOME"] = str(cache_dir / "cache")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_VERIFY_LOCK = threading.Lock()


def _publisher_identity(publisher: Any) -> Identity:
    data = publisher.model_dump(exclude_none=True)
    return Identity.from_mapping(data, "provenance publisher")


def _as_publisher(identity: Identity) -> Any:
    from pydantic import TypeAdapter
    from pypi_attestations import Publisher

    return TypeAdapter(Publisher).validate_python(identity.as_dict())


def verify_provenance(
    raw: bytes,
    filename: str,
    sha256: str,
    expected: Identity | None,
    trust_root_dir: Path | None = None,
) -> Attested | Rejected:
    """Verify every attestation in a provenance object against ``expected`` (or, with nothing
    pinned, against the publisher it names, only to show it) for the file ``filename`` with
    digest ``sha256``. Offline: no network is used."""
    import pydantic
    from pypi_attestations import Distribution, Provenance

    try:
        provenance = Provenance.model_validate_json(raw)
    except (pydantic.ValidationError, ValueError) as exc:
        first = str(exc).splitlines()[0][:160]
        return Rejected(filename, f"provenance object is malformed: {first}")
    try:
        dist = Distribution(name=filename, digest=sha256)
    except (pydantic.ValidationError, ValueError):
        return Rejected(filename, "the file name is not a valid distribution name")
    if not provenance.attestation_bundles:
        return Rejected(filename, "provenance holds no attestation")
    identities: set[Identity] = set()
    for bundle in provenance.attestation_bundles:
        try:
            served = _publisher_identity(bundle.publisher)
        except UsageError:
            return Rejected(filename, "provenance names a publisher of an unknown kind")
        identities.add(served)
        if not bundle.attestations:
            return Rejected(filename, "provenance holds an empty attestation bundle", served)
        policy = _as_publisher(expected) if expected is not None else bundle.publisher
        for attestation in bundle.attestations:
            failure = _verify_one(attestation, policy, dist, trust_root_dir)
            if failure is not None:
                if expected is not None and served != expected:
                    failure = f"signed by {served.display}, not the pinned {expected.display}"
                return Rejected(filename, failure, served)
    if len(identities) != 1:
        shown = ", ".join(sorted(i.display for i in identities))
        return Rejected(filename, f"provenance names several publishers: {shown}")
    served = identities.pop()
    if expected is not None and not expected.matches(served):
        reason = f"signed by {served.display}, not the pinned {expected.display}"
        return Rejected(filename, reason, served)
    return Attested(filename, served)


def _quiet_verifier_logs() -> None:
    """The verifier logs a warning on every offline use; safepip reports through findings."""
    import logging

    logging.getLogger("sigstore").setLevel(logging.ERROR)


def _verify_one(
    attestation: Any, policy: Any, dist: Any, trust_root_dir: Path | None
) -> str | None:
    """Why one attestation does not verify, or None when it does."""
    from pypi_attestations import AttestationError

    _quiet_verifier_logs()
    try:
        with _VERIFY_LOCK, _trust_root_home(trust_root_dir):
            attestation.verify(policy, dist, offline=True)
    except AttestationError as exc:
        return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    except Exception as exc:  # the verifier's own parsing errors on hostile input
        return f"attestation cannot be verified: {type(exc).__name__}"
    return None


def refresh_trust_root(trust_root_dir: Path) -> None:
    """Refresh the Sigstore trust root online (only when the user asks)."""
    if not verifier_available():
        raise PolicyRefusal("attestation verification is not installed", hint=EXTRA_HINT)
    from sigstore.models import ClientTrustConfig

    with _trust_root_home(trust_root_dir):
        ClientTrustConfig.production(offline=False)


def _provenance(
    session: requests.Session, link: FileLink, name: str, version: str, timeout: float
) -> bytes | ProvenanceOutcome:
    """The provenance bytes of one file the index lists, or its outcome when there are none to
    verify."""
    url = link.provenance_url or _integrity_url(link, name, version)
    if url is None:
        return Unattested(link.filename, "the index serves no provenance")
    raw = fetch_provenance(session, url, timeout)
    if isinstance(raw, Unattested):
        return Unattested(link.filename, raw.reason, served_by_index=True)
    if isinstance(raw, Rejected):
        return Rejected(link.filename, raw.reason)
    return raw


def file_outcome(
    session: requests.Session,
    link: FileLink,
    name: str,
    version: str,
    sha256: str,
    expected: Identity | None,
    *,
    timeout: float,
    trust_root_dir: Path | None,
) -> ProvenanceOutcome:
    """Fetch and verify the provenance of one file the index lists, with digest ``sha256``."""
    raw = _provenance(session, link, name, version, timeout)
    if not isinstance(raw, bytes):
        return raw
    return verify_provenance(raw, link.filename, sha256, expected, trust_root_dir)


def _provenance_of(
    session: requests.Session, vf: VerifiedFile, timeout: float
) -> bytes | ProvenanceOutcome:
    link = vf.pin.source
    assert isinstance(link, FileLink)
    return _provenance(session, link, vf.pin.name, str(vf.pin.version), timeout)


def _verifier_installed() -> bool:
    """Whether the verifier is there, without importing it (that costs more than a second)."""
    import importlib.util

    try:
        return importlib.util.find_spec("pypi_attestations") is not None
    except (ImportError, ValueError):
        return False


def attestation_findings(
    session: requests.Session,
    files: Sequence[VerifiedFile],
    expectations: Expectations,
    *,
    timeout: float,
    trust_root_dir: Path | None,
    workers: int = 8,
) -> list[Finding]:
    """Verify the provenance of every file to install and say what that means for each."""
    if not files:
        return []
    # The verifier (more than a second to import) is imported only when it is needed: when the
    # policy expects attestations, or once some provenance has come to verify.
    if not (verifier_available() if expectations.active else _verifier_installed()):
        if expectations.active:
            needed = sorted(n for n in {f.pin.name for f in files} if expectations.requires(n))
            if needed:
                raise PolicyRefusal(
                    "attestations are required for "
                    + ", ".join(needed)
                    + " but the verifier is not installed",
                    hint=EXTRA_HINT,
                    reference="attestations-unavailable",
                )
        return []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="safepip-attest") as pool:
        fetched = list(pool.map(lambda vf: _provenance_of(session, vf, timeout), files))
        if any(isinstance(raw, bytes) for raw in fetched) and not verifier_available():
            return []

        def verified(vf: VerifiedFile, raw: bytes | ProvenanceOutcome) -> ProvenanceOutcome:
            if not isinstance(raw, bytes):
                return raw
            assert isinstance(vf.pin.source, FileLink)
            expected = expectations.identities.get(vf.pin.name)
            name = vf.pin.source.filename
            return verify_provenance(raw, name, vf.sha256, expected, trust_root_dir)

        outcomes = list(pool.map(verified, files, fetched))
    findings = [
        f
        for vf, outcome in zip(files, outcomes, strict=True)
        if (f := decide(vf.pin.name, outcome, expectations)) is not None
    ]
    findings.extend(_indexes_without_provenance(files, outcomes))
    return findings


def decide(
    name: NormalizedName, outcome: ProvenanceOutcome, expectations: Expectations
) -> Finding | None:
    """What one file's provenance outcome means under the user's expectations."""
    expected = expectations.identities.get(name)
    source = expectations.sources.get(name, "policy")
    if isinstance(outcome, Attested):
        if expected is not None:
            message = f"{outcome.filename} attested by {outcome.identity.display}, as pinned"
        else:
            message = f"{outcome.filename} attested by {outcome.identity.display}"
        return Finding(
            gate="attestations",
            project=name,
            message=message,
            action="report",
            rule="attested",
            details=(
                ("identity", outcome.identity.display),
                ("filename", outcome.filename),
                ("publisher", outcome.identity.to_json()),
            ),
        )
    if isinstance(outcome, Rejected):
        details: tuple[tuple[str, str], ...] = (("filename", outcome.filename),)
        if outcome.served is not None:
            details += (("served-identity", outcome.served.display),)
        if expected is not None:
            details += (("pinned-identity", expected.display), ("pinned-in", source))
        hint = (
            f"if {name}'s publisher really changed, accept it with `safepip lock "
            f"--upgrade-package {name} --accept-identity-change`"
            if expected is not None and outcome.served is not None and outcome.served != expected
            else "do not install this file; the index serves provenance that does not verify"
        )
        return Finding(
            gate="attestations",
            project=name,
            message=f"{outcome.filename}: attestation refused: {outcome.reason}",
            action="refuse",
            rule="attestation-invalid" if expected is None else "attestation-identity",
            hint=hint,
            details=details,
        )
    if expected is not None:
        return Finding(
            gate="attestations",
            project=name,
            message=f"{outcome.filename} has no provenance ({outcome.reason}), but its "
            f"publisher is pinned ({source}) to {expected.display}",
            action="refuse",
            rule="attestation-missing",
            hint="the pinned publisher no longer attests this project's files; find out why "
            "before installing it",
            details=(("filename", outcome.filename), ("pinned-identity", expected.display)),
        )
    if expectations.requires(name):
        return Finding(
            gate="attestations",
            project=name,
            message=f"{outcome.filename} has no valid provenance ({outcome.reason}), and "
            "attestations are required",
            action="refuse",
            rule="attestation-required",
            hint="pick a project or version published with attestations, or lift the "
            "requirement for it in your policy",
            details=(("filename", outcome.filename),),
        )
    return None


def attested_identities(findings: Sequence[Finding]) -> dict[str, Identity]:
    """The publisher each project's files were verified against, from the gate's findings
    (for the SBOM)."""
    out: dict[str, Identity] = {}
    for finding in findings:
        publisher = dict(finding.details).get("publisher")
        if finding.gate == "attestations" and finding.rule == "attested" and publisher:
            out[finding.project] = Identity.from_json(publisher, "finding")
    return out


def _indexes_without_provenance(
    files: Sequence[VerifiedFile], outcomes: Sequence[ProvenanceOutcome]
) -> list[Finding]:
    """An index that serves no provenance at all is reported once, not once per file."""
    by_index: dict[str, list[ProvenanceOutcome]] = {}
    for vf, outcome in zip(files, outcomes, strict=True):
        assert isinstance(vf.pin.source, FileLink)
        by_index.setdefault(vf.pin.source.index_url, []).append(outcome)
    return [
        Finding(
            gate="attestations",
            project="*",
            message=f"{redact_url(index)} serves no provenance (PEP 740) for any file installed",
            action="report",
            rule="index-without-provenance",
        )
        for index, results in by_index.items()
        if all(isinstance(o, Unattested) and not o.served_by_index for o in results)
    ]


def _with_provenance_urls(
    files: Sequence[VerifiedFile], pages: Callable[[NormalizedName], Sequence[ProjectPage]]
) -> list[VerifiedFile]:
    """Files installed from a pylock.toml carry no provenance URL: take it from the index the
    lock records, for the listed file of the same name and sha256."""
    out = []
    for vf in files:
        link = vf.pin.source
        assert isinstance(link, FileLink)
        if link.provenance_url is None:
            listed = (
                f.provenance_url
                for page in pages(vf.pin.name)
                for f in page.files
                if f.filename == link.filename and f.sha256 in (None, vf.sha256)
            )
            url = next((u for u in listed if u), None)
            if url is not None:
                pin = dataclasses.replace(
                    vf.pin, source=dataclasses.replace(link, provenance_url=url)
                )
                vf = dataclasses.replace(vf, pin=pin)
        out.append(vf)
    return out


def check_files(
    settings: Settings,
    session: requests.Session,
    files: Sequence[VerifiedFile],
    trust_root_dir: Path,
    locked: Mapping[NormalizedName, Identity] | None = None,
    pages: Callable[[NormalizedName], Sequence[ProjectPage]] | None = None,
) -> list[Finding]:
    """The attestation file gate, as the pipeline runs it: ``locked`` are the identities the
    locks being installed pin, ``pages`` the index pages that give a locked file's provenance."""
    expectations = expectations_from(
        settings.policy.section("attestations"),
        settings.policy.project_section("attestations"),
        require_flag="--require-attestations" in settings.extra,
        locked=locked,
    )
    if settings.locks and pages is not None:
        files = _with_provenance_urls(files, pages)
    return attestation_findings(
        session,
        files,
        expectations,
        timeout=settings.net.timeout,
        trust_root_dir=trust_root_dir,
    )
