"""The project-status gate: yanked files (PEP 592) and project status markers (PEP 792)."""

from __future__ import annotations

from collections.abc import Sequence

from safepip.models import FileLink, Finding, Pin, ProjectPage

__all__ = ["status_findings", "yank_finding"]

GATE = "status"


def yank_finding(pin: Pin) -> Finding | None:
    """A yanked file is only ever chosen for an ``==`` pin (the resolver's rule): say so."""
    link = pin.source
    if not isinstance(link, FileLink) or not link.yanked:
        return None
    reason = link.yank_reason or "no reason given"
    return Finding(
        gate=GATE,
        project=pin.name,
        message=f"{pin.name}=={pin.version} is yanked ({reason}); installing it because it "
        "is pinned with ==",
        action="warn",
        rule="yanked",
        hint="pin a version that is not yanked",
        details=(("version", str(pin.version)), ("reason", reason)),
    )


def project_status_finding(pin: Pin, page: ProjectPage) -> Finding | None:
    """PEP 792: ``quarantined`` is refused, ``archived`` and ``deprecated`` are warned about."""
    status = (page.status or "active").lower()
    if status == "active":
        return None
    reason = f": {page.status_reason}" if page.status_reason else ""
    if status == "quarantined":
        return Finding(
            gate=GATE,
            project=pin.name,
            message=f"the index has quarantined {pin.name}{reason}",
            action="refuse",
            rule="project-quarantined",
            hint="a quarantined project is suspected of being malicious: do not install it",
            details=(("status", status), ("index", page.index_url)),
        )
    if status in ("archived", "deprecated"):
        return Finding(
            gate=GATE,
            project=pin.name,
            message=f"the index marks {pin.name} {status}{reason}; it may get no more fixes",
            action="warn",
            rule=f"project-{status}",
            hint="look for a maintained replacement",
            details=(("status", status), ("index", page.index_url)),
        )
    return Finding(
        gate=GATE,
        project=pin.name,
        message=f"the index gives {pin.name} the unknown status {status!r}{reason}",
        action="report",
        rule="project-status-unknown",
        details=(("status", status), ("index", page.index_url)),
    )


def status_findings(pin: Pin, pages: Sequence[ProjectPage]) -> list[Finding]:
    """Findings for one pin, from the page of the index that serves its file."""
    found: list[Finding] = []
    yank = yank_finding(pin)
    if yank is not None:
        found.append(yank)
    if isinstance(pin.source, FileLink):
        served_by = pin.source.index_url
        for page in pages:
            if page.index_url == served_by:
                status = project_status_finding(pin, page)
                if status is not None:
                    found.append(status)
    return found
