"""Publisher identities in locks: pinned by ``safepip lock --pin-attestations`` (trust on first
use), kept across re-locks unless a change is accepted explicitly, and read back from
pylock.toml and hashed requirements files so that installs enforce them."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import requests
from packaging.utils import NormalizedName, canonicalize_name

from safepip.attest import (
    EXTRA_HINT,
    Attested,
    Identity,
    ProvenanceOutcome,
    Rejected,
    Unattested,
    file_outcome,
    verifier_available,
)
from safepip.errors import PolicyRefusal, RequirementsError, UsageError
from safepip.lock import ATTESTATION_COMMENT, LockedPackage, is_pylock_path, read_pylock
from safepip.models import FileLink, Finding

if TYPE_CHECKING:
    from safepip.config import Settings
    from safepip.report import Reporter

__all__ = [
    "PinRequest",
    "locked_identities",
    "pin_identities",
    "pin_request",
    "read_locked_identities",
]

ACCEPT_OPTION = "--accept-identity-change"
_REQUIREMENT_HEAD = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==")


# --- reading identities back -----------------------------------------------------------------


def _one_identity(where: str, found: Sequence[Identity]) -> Identity | None:
    distinct = list(dict.fromkeys(found))
    if len(distinct) > 1:
        raise RequirementsError(
            f"{where} pins {len(distinct)} publisher identities; safepip enforces one per project",
            hint="keep the one identity that publishes the project, or lock it again",
        )
    return distinct[0] if distinct else None


def _from_pylock(path: str) -> dict[NormalizedName, Identity]:
    out: dict[NormalizedName, Identity] = {}
    for package in read_pylock(path).packages:
        where = f"{path}: {package.name} attestation-identities"
        found = [Identity.from_mapping(d, where) for d in package.attestation_identities or ()]
        identity = _one_identity(where, found)
        if identity is not None:
            out[package.name] = identity
    return out


def _from_requirements(path: str) -> dict[NormalizedName, Identity]:
    found: dict[NormalizedName, list[Identity]] = {}
    current: NormalizedName | None = None
    try:
        with open(path, encoding="utf-8") as f:
            lines = list(enumerate(f, start=1))
    except (OSError, UnicodeDecodeError):
        return {}
    for number, line in lines:
        head = _REQUIREMENT_HEAD.match(line)
        if head:
            current = canonicalize_name(head.group(1))
            continue
        text = line.strip()
        if text.startswith(ATTESTATION_COMMENT) and current is not None:
            where = f"{path} (line {number})"
            identity = Identity.from_json(text[len(ATTESTATION_COMMENT) :], where)
            found.setdefault(current, []).append(identity)
    return {
        name: ident
        for name, identities in found.items()
        if (ident := _one_identity(f"{path}: {name}", identities)) is not None
    }


def read_locked_identities(path: str) -> dict[NormalizedName, Identity]:
    """The publisher identity each project of a lock (pylock.toml or hashed requirements) pins."""
    if path == "-" or not os.path.isfile(path):
        return {}
    if is_pylock_path(path) or path.endswith(".toml"):
        return _from_pylock(path)
    return _from_requirements(path)


def locked_identities(settings: Settings) -> dict[NormalizedName, Identity]:
    """Every identity pinned by the locks an install reads (pylock.toml files given with -r, and
    hashed requirements files written by ``safepip lock``)."""
    paths = [s.path for s in settings.locks] + [p for p, _ in settings.lock_environments]
    out: dict[NormalizedName, Identity] = {}
    for path in paths:
        for name, identity in read_locked_identities(path).items():
            if out.setdefault(name, identity) != identity:
                raise UsageError(
                    f"the locks given pin different publishers for {name}: "
                    f"{out[name].display} and {identity.display}",
                    hint="install one lock at a time",
                )
    return out


# --- pinning at lock time --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PinRequest:
    """What ``safepip lock`` pins: the output's existing identities are kept, except for the
    projects whose change was accepted."""

    output: str
    previous: dict[NormalizedName, Identity]
    accept: frozenset[NormalizedName]


def _pin_asked(settings: Settings) -> bool:
    trusted = settings.policy.section("attestations").get("pin", False)
    project = settings.policy.project_section("attestations").get("pin", False)
    return "--pin-attestations" in settings.extra or trusted is True or project is True


def pin_request(
    settings: Settings, output: str, upgrade_packages: frozenset[NormalizedName]
) -> PinRequest | None:
    """Whether this lock pins identities (asked for, or the output already pins some), checked
    before anything is resolved; None when it does not."""
    accept = ACCEPT_OPTION in settings.extra
    if accept and not upgrade_packages:
        raise UsageError(
            f"{ACCEPT_OPTION} accepts the change for the projects named by --upgrade-package",
            hint=f"e.g. safepip lock --upgrade-package NAME {ACCEPT_OPTION}",
        )
    previous = read_locked_identities(output)
    if not (_pin_asked(settings) or previous):
        return None
    if not verifier_available():
        why = "--pin-attestations" if _pin_asked(settings) else f"{output} pins publishers, so it"
        raise PolicyRefusal(
            f"{why} needs attestation verification, which is not installed",
            hint=EXTRA_HINT,
            reference="attestations-unavailable",
        )
    return PinRequest(output, previous, upgrade_packages if accept else frozenset())


def _finding(
    name: str, action: Literal["refuse", "warn", "report"], rule: str, message: str, hint: str = ""
) -> Finding:
    return Finding(
        gate="attestations", project=name, message=message, action=action, rule=rule, hint=hint
    )


def _accept_hint(name: str) -> str:
    return (
        f"if {name}'s publisher really changed, accept it with "
        f"`safepip lock --upgrade-package {name} {ACCEPT_OPTION}`"
    )


def _several(name: str, identities: set[Identity]) -> Finding:
    shown = "; ".join(sorted(i.display for i in identities))
    return _finding(
        name,
        "refuse",
        "attestation-several",
        f"the files of {name} are attested by several publishers: {shown}",
        "find out why before locking it",
    )


def _pin_for(
    package: LockedPackage,
    outcomes: Sequence[ProvenanceOutcome],
    previous: Identity | None,
    accepted: bool,
    output: str,
) -> tuple[Identity | None, list[Finding]]:
    """The identity to record for one project, and what to say about it."""
    name = package.name
    refused = [
        _finding(
            name,
            "refuse",
            "attestation-invalid",
            f"{o.filename}: attestation refused: {o.reason}",
            "do not lock this version; the index serves provenance that does not verify",
        )
        for o in outcomes
        if isinstance(o, Rejected)
    ]
    if refused:
        return previous, refused
    identities = {o.identity for o in outcomes if isinstance(o, Attested)}
    if len(identities) > 1:
        return previous, [_several(name, identities)]
    if not identities:
        if previous is None:
            return None, []
        if accepted:
            message = f"no longer attested; the pin to {previous.display} is dropped (accepted)"
            return None, [_finding(name, "warn", "attestation-dropped", message)]
        message = (
            f"no file of {name}=={package.version} has provenance, but {output} pins its "
            f"publisher to {previous.display}"
        )
        return previous, [
            _finding(name, "refuse", "attestation-missing", message, _accept_hint(name))
        ]
    served = identities.pop()
    findings = []
    bare = [o.filename for o in outcomes if isinstance(o, Unattested)]
    if bare:
        message = (
            f"{', '.join(bare)} not attested while the other files are, by {served.display}; "
            "an install that picks one of them is refused"
        )
        findings.append(_finding(name, "warn", "attestation-partial", message))
    if previous is not None and not previous.matches(served):
        if not accepted:
            message = (
                f"{name}=={package.version} is attested by {served.display}, but {output} "
                f"pins {previous.display}"
            )
            refusal = _finding(name, "refuse", "attestation-identity", message, _accept_hint(name))
            return previous, [*findings, refusal]
        message = f"publisher changed from {previous.display} to {served.display} (accepted)"
        findings.append(_finding(name, "warn", "attestation-identity-changed", message))
    return served, findings


def _outcomes(
    packages: Sequence[LockedPackage], session: requests.Session, settings: Settings
) -> list[list[ProvenanceOutcome]]:
    """The provenance outcome of every file of every package (the files need not be
    downloaded: the index's sha256 is what the lock records and what provenance attests)."""
    from safepip.pipeline import default_cache_dir

    trust_root = default_cache_dir() / "sigstore"
    jobs = [(p, f) for p in packages for f in p.files if f.sha256]

    def outcome(job: tuple[LockedPackage, FileLink]) -> ProvenanceOutcome:
        package, link = job
        return file_outcome(
            session,
            link,
            package.name,
            str(package.version),
            link.sha256 or "",
            None,
            timeout=settings.net.timeout,
            trust_root_dir=trust_root,
        )

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="safepip-attest") as pool:
        results = list(pool.map(outcome, jobs))
    grouped: dict[int, list[ProvenanceOutcome]] = {}
    for (package, _), result in zip(jobs, results, strict=True):
        grouped.setdefault(id(package), []).append(result)
    return [grouped.get(id(p), []) for p in packages]


def pin_identities(
    request: PinRequest,
    packages: Sequence[LockedPackage],
    settings: Settings,
    session: requests.Session,
    reporter: Reporter,
) -> tuple[LockedPackage, ...]:
    """Verify the provenance of every locked file and record each project's publisher; refuse
    (exit 3) what does not verify and any change of a pinned publisher not accepted."""
    from safepip.pipeline import settle

    findings: list[Finding] = []
    out = []
    first_use = []
    for package, outcomes in zip(packages, _outcomes(packages, session, settings), strict=True):
        previous = request.previous.get(package.name)
        identity, said = _pin_for(
            package, outcomes, previous, package.name in request.accept, request.output
        )
        findings.extend(said)
        if identity is not None and previous is None:
            first_use.append(f"{package.name}: {identity.display}")
        out.append(dataclasses.replace(package, identity=identity))
    settle(findings, reporter)
    if first_use:
        reporter.info(
            "Pinned publisher identities on first use (trust on first use: check that these "
            "are the projects' real publishers):"
        )
        for line in first_use:
            reporter.info(f"  {line}")
    return tuple(out)
