"""Pure rules that decide which listed files may serve a project."""

from __future__ import annotations

from collections.abc import Sequence

from safepip.models import FileLink, ProjectPage

__all__ = ["merge_pages"]


def merge_pages(pages: Sequence[ProjectPage]) -> list[FileLink]:
    """Every file every source lists, the first source winning for a repeated filename."""
    seen: set[str] = set()
    out: list[FileLink] = []
    for page in pages:
        for link in page.files:
            if link.filename in seen:
                continue
            seen.add(link.filename)
            out.append(link)
    return out
