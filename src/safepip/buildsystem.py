"""The static ``[build-system] requires`` of a source distribution, read from its archive
without unpacking it to disk or running any of its code."""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from safepip.errors import PolicyRefusal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["DEFAULT_BUILD_REQUIRES", "static_build_requires", "tree_build_requires"]

# What pip assumes for a project without a [build-system] table (PEP 517's legacy fallback).
DEFAULT_BUILD_REQUIRES = ("setuptools>=40.8.0",)
MAX_PYPROJECT_BYTES = 1024 * 1024


def _refuse(filename: str, why: str) -> PolicyRefusal:
    return PolicyRefusal(
        f"{filename}: {why}",
        hint="the source distribution is malformed; pick a version with a wheel",
        reference="invalid-sdist",
    )


def _read_member_tar(path: Path, filename: str) -> bytes | None:
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                if member.name.count("/") == 1 and member.name.endswith("/pyproject.toml"):
                    if not member.isfile():
                        raise _refuse(filename, "pyproject.toml is not a regular file")
                    if member.size > MAX_PYPROJECT_BYTES:
                        raise _refuse(filename, "pyproject.toml is too large")
                    handle = tf.extractfile(member)
                    return handle.read() if handle is not None else None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _refuse(filename, f"not a readable archive ({exc})") from None
    return None


def _read_member_zip(path: Path, filename: str) -> bytes | None:
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = info.filename
                if name.count("/") == 1 and name.endswith("/pyproject.toml"):
                    if info.file_size > MAX_PYPROJECT_BYTES:
                        raise _refuse(filename, "pyproject.toml is too large")
                    with zf.open(info) as member:
                        return member.read(MAX_PYPROJECT_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _refuse(filename, f"not a readable archive ({exc})") from None
    return None


def static_build_requires(path: Path, filename: str) -> tuple[str, ...]:
    """The requirements ``[build-system] requires`` lists in the sdist's own pyproject.toml
    (pip's default when there is none). Build hooks may add more; those are not known here."""
    reader = _read_member_zip if filename.endswith(".zip") else _read_member_tar
    return _requires_of(reader(path, filename), filename)


def tree_build_requires(tree: Path) -> tuple[str, ...]:
    """The same, for a source tree (a project directory or a git checkout)."""
    pyproject = tree / "pyproject.toml"
    if pyproject.is_symlink() or not pyproject.is_file():
        return DEFAULT_BUILD_REQUIRES
    if pyproject.stat().st_size > MAX_PYPROJECT_BYTES:
        raise _refuse(str(tree), "pyproject.toml is too large")
    return _requires_of(pyproject.read_bytes(), str(tree))


def _requires_of(raw: bytes | None, filename: str) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_BUILD_REQUIRES
    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _refuse(filename, f"pyproject.toml is not valid TOML ({exc})") from None
    table = data.get("build-system")
    if table is None:
        return DEFAULT_BUILD_REQUIRES
    requires = table.get("requires") if isinstance(table, dict) else None
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise _refuse(filename, "[build-system] requires is missing or not a list of strings")
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise _refuse(filename, f"invalid build requirement {text!r} ({exc})") from None
        if req.url:
            raise _refuse(filename, f"build requirement {text!r} is a direct URL")
    return tuple(requires)
