"""What ``install --dry-run`` checks: like pip's, it resolves from core metadata (PEP 658 or
range reads) and downloads no index file; the plan gates run in full. ``--verify-files`` makes
it download and verify every file and run the file gates too, as an install would."""

from __future__ import annotations

from collections.abc import Sequence

from safepip.config import Settings
from safepip.models import FileLink, Finding, Pin

__all__ = ["VERIFY_FILES", "files_not_checked", "needs_bytes"]

VERIFY_FILES = "--verify-files"


def _metadata_only(settings: Settings) -> bool:
    return settings.dry_run and VERIFY_FILES not in settings.extra


def needs_bytes(settings: Settings, pin: Pin) -> bool:
    """Whether the run downloads and verifies ``pin``'s file before going on. A dry run leaves
    index files alone; a direct reference's file is already at hand (its hash is reported)."""
    return not _metadata_only(settings) or pin.direct is not None


def files_not_checked(settings: Settings, pins: Sequence[Pin]) -> list[Finding]:
    """One report-only finding naming the files a dry run did not download, so the report says
    which checks did not run."""
    skipped = [
        p.source.filename
        for p in pins
        if isinstance(p.source, FileLink) and not needs_bytes(settings, p)
    ]
    if not skipped:
        return []
    return [
        Finding(
            gate="dry-run",
            project="*",
            message=f"{len(skipped)} file(s) not downloaded: their hashes, wheel contents and "
            "attestations are checked when they are installed",
            action="report",
            rule="files-not-checked",
            hint=f"add {VERIFY_FILES} to download and check them in the dry run",
            details=(("files", " ".join(skipped)),),
        )
    ]
