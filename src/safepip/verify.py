"""Checks on downloaded files beyond their hashes: a wheel must be what the resolver was told."""

from __future__ import annotations

import zipfile
from pathlib import Path

from safepip.errors import PolicyRefusal
from safepip.fetch import ZIP_ERRORS, read_wheel_metadata
from safepip.models import FileLink, Pin
from safepip.resolve import parse_metadata

__all__ = ["verify_wheel"]


def verify_wheel(pin: Pin, path: Path) -> None:
    """The wheel's own METADATA must name the pinned project and version and declare exactly the
    dependencies the resolver used."""
    assert isinstance(pin.source, FileLink)
    filename = pin.source.filename
    if not filename.endswith(".whl"):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            raw = read_wheel_metadata(zf, filename)
    except ZIP_ERRORS as exc:
        raise PolicyRefusal(
            f"{filename} is not a readable wheel: {exc}", reference="invalid-wheel"
        ) from None
    meta = parse_metadata(raw, filename)
    if meta.name != pin.name or meta.version != pin.version:
        raise PolicyRefusal(
            f"{filename} contains {meta.name} {meta.version}, not {pin.name} {pin.version}",
            hint="the index serves a file under the wrong name; do not install it",
            reference="metadata-mismatch",
        )
    used = parse_metadata(pin.metadata, filename) if pin.metadata else None
    if used is not None and sorted(used.requires_dist) != sorted(meta.requires_dist):
        raise PolicyRefusal(
            f"{filename}: the dependencies in the wheel differ from the metadata the index served",
            context=(
                f"index metadata: {', '.join(used.requires_dist) or '(none)'}",
                f"wheel metadata: {', '.join(meta.requires_dist) or '(none)'}",
            ),
            hint="the index's metadata does not describe this file; do not install it",
            reference="metadata-mismatch",
        )
