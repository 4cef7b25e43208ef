"""Unpacking sdists as untrusted data: no absolute paths, no ``..``, no links leaving the tree,
no devices, and caps on member count and unpacked size."""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from safepip.errors import PolicyRefusal

__all__ = ["ArchiveCaps", "UnsafeArchive", "unpack_sdist"]

_CHUNK = 1 << 20


class UnsafeArchive(PolicyRefusal):
    """An sdist that would write outside its directory, or is too big to unpack."""

    reference = "unsafe-sdist"


@dataclass(frozen=True, slots=True)
class ArchiveCaps:
    max_members: int = 100_000
    max_total_bytes: int = 2 << 30
    max_member_bytes: int = 1 << 30


@dataclass(frozen=True, slots=True)
class _Member:
    name: str
    kind: str  # "file", "dir", "symlink", "hardlink"
    size: int
    mode: int
    link: str
    opener: object


def _clean_name(raw: str, filename: str) -> str:
    name = raw.replace("\\", "/") if "\\" in raw and "/" not in raw else raw
    if not name or "\0" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"{filename} has a member with an absolute path: {raw[:120]!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"{filename} has a member leaving its directory: {raw[:120]!r}")
    if not parts:
        return ""
    return "/".join(parts)


def _tar_members(tf: tarfile.TarFile, filename: str) -> Iterator[_Member]:
    for info in tf:
        name = _clean_name(info.name, filename)
        if info.isdir():
            yield _Member(name, "dir", 0, info.mode, "", None)
        elif info.isreg():
            yield _Member(name, "file", info.size, info.mode, "", info)
        elif info.issym():
            yield _Member(name, "symlink", 0, 0, info.linkname, None)
        elif info.islnk():
            yield _Member(name, "hardlink", 0, 0, _clean_name(info.linkname, filename), None)
        else:
            raise UnsafeArchive(
                f"{filename} has a device, pipe or other special member: {info.name[:120]!r}"
            )


def _zip_members(zf: zipfile.ZipFile, filename: str) -> Iterator[_Member]:
    for info in zf.infolist():
        name = _clean_name(info.filename, filename)
        mode = info.external_attr >> 16
        if info.is_dir():
            yield _Member(name, "dir", 0, 0o755, "", None)
        elif stat.S_ISLNK(mode):
            yield _Member(name, "symlink", 0, 0, zf.read(info).decode(errors="replace"), None)
        elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):
            raise UnsafeArchive(f"{filename} has a special member: {info.filename[:120]!r}")
        else:
            yield _Member(name, "file", info.file_size, stat.S_IMODE(mode) or 0o644, "", info)


def _link_stays_inside(name: str, target: str) -> bool:
    if target.startswith("/") or not target:
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    return not (joined == ".." or joined.startswith("../"))


def _write_file(dest: Path, stream: IO[bytes], limit: int, filename: str, name: str) -> int:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(_CHUNK):
            written += len(chunk)
            if written > limit:
                raise UnsafeArchive(
                    f"{filename}: {name[:120]!r} is larger than it claims or than allowed"
                )
            out.write(chunk)
    return written


def unpack_sdist(
    archive: Path, filename: str, dest: Path, caps: ArchiveCaps = ArchiveCaps()
) -> Path:
    """Unpack ``archive`` into ``dest`` (which must not exist) and return the project directory
    (the one top-level directory holding ``pyproject.toml`` or ``setup.py``)."""
    dest.mkdir()
    if filename.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            return _unpack(
                _zip_members(zf, filename),
                lambda m: zf.open(m.opener),
                dest,
                filename,
                caps,
            )
    try:
        with tarfile.open(archive, mode="r:*") as tf:

            def opener(m: _Member) -> IO[bytes]:
                stream = tf.extractfile(m.opener)  # type: ignore[arg-type]
                assert stream is not None
                return stream

            return _unpack(_tar_members(tf, filename), opener, dest, filename, caps)
    except (tarfile.TarError, EOFError, OSError, zipfile.BadZipFile) as exc:
        if isinstance(exc, PolicyRefusal):
            raise
        raise UnsafeArchive(
            f"{filename} is not a readable sdist: {exc}", reference="invalid-sdist"
        ) from None


def _unpack(
    members: Iterator[_Member],
    open_member: object,
    dest: Path,
    filename: str,
    caps: ArchiveCaps,
) -> Path:
    total = 0
    count = 0
    links: list[_Member] = []
    files: set[str] = set()
    for member in members:
        count += 1
        if count > caps.max_members:
            raise UnsafeArchive(f"{filename} has more than {caps.max_members} members")
        if not member.name:
            continue
        if any(
            member.name.startswith(link.name + "/") or member.name == link.name for link in links
        ):
            raise UnsafeArchive(
                f"{filename}: {member.name[:120]!r} would be written through a link"
            )
        target = dest.joinpath(*member.name.split("/"))
        if member.kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
            continue
        if member.kind in ("symlink", "hardlink"):
            if member.kind == "symlink" and not _link_stays_inside(member.name, member.link):
                raise UnsafeArchive(
                    f"{filename}: the link {member.name[:120]!r} points outside the sdist"
                )
            links.append(member)
            continue
        if member.size > caps.max_member_bytes or total + member.size > caps.max_total_bytes:
            raise UnsafeArchive(f"{filename} unpacks to more than {caps.max_total_bytes} bytes")
        target.parent.mkdir(parents=True, exist_ok=True)
        if member.name in files and not target.is_symlink():
            target.unlink()  # a tar may list a file twice: the later copy wins, as with tar
        elif target.exists() or target.is_symlink():
            raise UnsafeArchive(f"{filename} has {member.name[:120]!r} twice")
        stream = open_member(member)  # type: ignore[operator]
        with stream:
            total += _write_file(
                target,
                stream,
                min(caps.max_member_bytes, caps.max_total_bytes - total),
                filename,
                member.name,
            )
        if member.mode & 0o111:
            target.chmod(0o755)
        files.add(member.name)
    for link in links:
        target = dest.joinpath(*link.name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            raise UnsafeArchive(f"{filename} has {link.name[:120]!r} twice")
        if link.kind == "symlink":
            os.symlink(link.link, target)
        elif link.link in files:
            source = dest.joinpath(*link.link.split("/"))
            target.write_bytes(source.read_bytes())
        else:
            raise UnsafeArchive(
                f"{filename}: the hard link {link.name[:120]!r} has no target in the sdist"
            )
    return _project_dir(dest, filename)


def _project_dir(dest: Path, filename: str) -> Path:
    entries = list(dest.iterdir())
    candidates = [e for e in entries if e.is_dir() and not e.is_symlink()]
    root = candidates[0] if len(entries) == 1 and len(candidates) == 1 else dest
    if not (root / "pyproject.toml").is_file() and not (root / "setup.py").is_file():
        raise UnsafeArchive(
            f"{filename} has neither pyproject.toml nor setup.py at its top",
            reference="invalid-sdist",
        )
    for marker in ("pyproject.toml", "setup.py"):
        if (root / marker).is_symlink():
            raise UnsafeArchive(f"{filename}: {marker} is a link", reference="invalid-sdist")
    return root
