"""Reading a wheel once: every member hashed against its RECORD, its install locations, commands
and start-up files, for the wheel content gate to judge."""

from __future__ import annotations

import base64
import configparser
import csv
import hashlib
import io
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from packaging.utils import NormalizedName, canonicalize_name

__all__ = [
    "SCHEME_KEYS",
    "Member",
    "Problem",
    "WheelContents",
    "is_unsafe_path",
    "scan_wheel",
]

SCHEME_KEYS = frozenset({"purelib", "platlib", "headers", "scripts", "data"})
# RECORD hash algorithms the wheel specification accepts (sha256 or stronger).
_STRONG_ALGORITHMS = frozenset(
    {"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512", "blake2b", "blake2s"}
)
_WEAK_ALGORITHMS = frozenset({"md5", "sha1", "sha224", "sha3_224"})
# Files of the wheel's own .dist-info that RECORD lists without a hash (the signature files may
# also be left out of RECORD altogether).
_UNHASHED = ("RECORD", "RECORD.jws", "RECORD.p7s")
_MAX_SMALL_FILE = 1024 * 1024  # .pth, WHEEL and entry_points.txt are read into memory up to this
_MAX_RECORD = 256 * 1024 * 1024  # RECORD is read whole (torch's is several megabytes)
_CHUNK = 1024 * 1024
_RAW_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's structFileHeader


@dataclass(frozen=True, slots=True)
class Problem:
    """Something in the archive that breaks a rule, found while reading it."""

    rule: str
    file: str
    message: str


@dataclass(frozen=True, slots=True)
class Member:
    """One file of the wheel and where it installs: ``scheme`` is a scheme key (``purelib``,
    ``platlib``, ``headers``, ``scripts``, ``data``) and ``relpath`` the path below it."""

    name: str
    scheme: str
    relpath: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class WheelContents:
    """What a wheel would install, as read from its archive."""

    filename: str
    project: NormalizedName
    dist_info: str
    members: tuple[Member, ...]
    commands: tuple[tuple[str, str], ...]  # (command name, "console_scripts" | "gui_scripts")
    small_files: Mapping[str, bytes]  # contents of .pth files, by member name
    problems: tuple[Problem, ...]


def is_unsafe_path(path: str) -> bool:
    """An absolute path, a drive letter or a ``..`` component, with either separator."""
    if not path or path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        return True
    parts = path.replace("\\", "/").split("/")
    return any(p == ".." for p in parts) or "\x00" in path


def _digest_matches(actual: bytes, recorded: str) -> bool:
    """RECORD digests are urlsafe base64 without padding; some real wheels write hex instead."""
    if base64.urlsafe_b64encode(actual).rstrip(b"=").decode() == recorded:
        return True
    return len(recorded) == 2 * len(actual) and recorded.lower() == actual.hex()


@dataclass(frozen=True, slots=True)
class _RecordRow:
    path: str
    algorithm: str
    digest: str
    size: str


def _parse_record(text: str) -> tuple[dict[str, _RecordRow], list[str]]:
    rows: dict[str, _RecordRow] = {}
    duplicates: list[str] = []
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0]:
            continue
        path = row[0]
        hash_field = row[1] if len(row) > 1 else ""
        size = row[2] if len(row) > 2 else ""
        algorithm, _, digest = hash_field.partition("=")
        if path in rows:
            duplicates.append(path)
        rows[path] = _RecordRow(path, algorithm.lower(), digest, size)
    return rows, duplicates


def _is_special(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    if info.create_system != 3 or not mode:
        return False
    kind = stat.S_IFMT(mode)
    return kind not in (0, stat.S_IFREG, stat.S_IFDIR)


def _find_dist_info(names: Iterable[str]) -> str | None:
    candidates = {
        n.split("/", 1)[0]
        for n in names
        if n.count("/") == 1
        and n.split("/", 1)[0].endswith(".dist-info")
        and n.endswith("/METADATA")
    }
    return next(iter(candidates)) if len(candidates) == 1 else None


def _location(name: str, dist_info: str, data_dir: str, root_scheme: str) -> tuple[str, str]:
    if name.startswith(data_dir + "/"):
        scheme, _, rest = name[len(data_dir) + 1 :].partition("/")
        return scheme, rest
    return root_scheme, name


def _root_scheme(wheel_text: str) -> str:
    for line in wheel_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "root-is-purelib":
            return "purelib" if value.strip().lower() == "true" else "platlib"
    return "platlib"


def _commands(text: str, filename: str) -> tuple[list[tuple[str, str]], list[Problem]]:
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        return [], [Problem("invalid-wheel", "entry_points.txt", f"cannot be parsed: {first}")]
    out: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for group in ("console_scripts", "gui_scripts"):
        if not parser.has_section(group):
            continue
        for name in parser.options(group):
            name = name.strip()
            if is_unsafe_path(name) or "/" in name or "\\" in name or name in ("", "."):
                problems.append(
                    Problem("unsafe-path", "entry_points.txt", f"declares the command {name!r}")
                )
                continue
            out.append((name, group))
    return out, problems


class _Reader:
    """One pass over the archive: hash every member, compare with RECORD, note what installs."""

    def __init__(
        self,
        zf: zipfile.ZipFile,
        filename: str,
        project: NormalizedName,
        raw: BinaryIO | None = None,
    ) -> None:
        self.zf = zf
        self.raw = raw
        self.filename = filename
        self.project = project
        self.problems: list[Problem] = []
        self.members: list[Member] = []
        self.small: dict[str, bytes] = {}

    def problem(self, rule: str, file: str, message: str) -> None:
        self.problems.append(Problem(rule, file, message))

    def read(self) -> WheelContents:
        infos = self.zf.infolist()
        names = [i.filename for i in infos if not i.is_dir()]
        dist_info = _find_dist_info(names)
        if dist_info is None:
            self.problem("invalid-wheel", "*.dist-info/METADATA", "has no single .dist-info")
            return self._contents("", [])
        self._check_shape(infos, dist_info)
        record_name = f"{dist_info}/RECORD"
        wheel_name = f"{dist_info}/WHEEL"
        if record_name not in names or wheel_name not in names:
            missing = record_name if record_name not in names else wheel_name
            self.problem("invalid-wheel", missing, "is missing")
            return self._contents(dist_info, [])
        record, duplicates = _parse_record(
            self._read_small(record_name, _MAX_RECORD).decode("utf-8", "replace")
        )
        for dup in duplicates:
            self.problem("record-mismatch", dup, "is listed twice in RECORD")
        root_scheme = _root_scheme(self._read_small(wheel_name).decode("utf-8", "replace"))
        data_dir = dist_info.removesuffix(".dist-info") + ".data"
        seen: set[str] = set()
        for info in infos:
            if info.is_dir():
                continue
            seen.add(info.filename)
            self._member(info, record.get(info.filename), dist_info, data_dir, root_scheme)
        for path in record:
            if path not in seen and not self._may_be_absent(path, dist_info):
                self.problem("record-extra", path, "is listed in RECORD but not in the archive")
        commands: list[tuple[str, str]] = []
        entry_points = f"{dist_info}/entry_points.txt"
        if entry_points in names:
            text = self._read_small(entry_points).decode("utf-8", "replace")
            commands, problems = _commands(text, self.filename)
            self.problems.extend(problems)
        return self._contents(dist_info, commands)

    def _contents(self, dist_info: str, commands: list[tuple[str, str]]) -> WheelContents:
        return WheelContents(
            filename=self.filename,
            project=self.project,
            dist_info=dist_info,
            members=tuple(self.members),
            commands=tuple(commands),
            small_files=dict(self.small),
            problems=tuple(self.problems),
        )

    def _check_shape(self, infos: list[zipfile.ZipInfo], dist_info: str) -> None:
        counts: dict[str, int] = {}
        for info in infos:
            counts[info.filename] = counts.get(info.filename, 0) + 1
            top = info.filename.split("/", 1)[0]
            if is_unsafe_path(info.filename):
                self.problem("unsafe-path", info.filename, "is an absolute or '..' path")
            elif _is_special(info):
                self.problem("special-file", info.filename, "is a symlink or special file")
            elif top.endswith(".dist-info") and top != dist_info:
                self.problem(
                    "foreign-dist-info", info.filename, "is in another project's .dist-info"
                )
        for name, count in counts.items():
            if count > 1:
                self.problem("invalid-wheel", name, f"appears {count} times in the archive")
        own = canonicalize_name(dist_info.removesuffix(".dist-info").split("-", 1)[0])
        if own != self.project:
            self.problem("foreign-dist-info", dist_info, f"names {own}, not {self.project}")

    def _may_be_absent(self, path: str, dist_info: str) -> bool:
        return path in (f"{dist_info}/RECORD.jws", f"{dist_info}/RECORD.p7s")

    def _read_small(self, name: str, limit: int = _MAX_SMALL_FILE) -> bytes:
        with self.zf.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            self.problem("invalid-wheel", name, f"is larger than {limit} bytes")
        return data[:limit]

    def _member(
        self,
        info: zipfile.ZipInfo,
        row: _RecordRow | None,
        dist_info: str,
        data_dir: str,
        root_scheme: str,
    ) -> None:
        name = info.filename
        unhashed = name in {f"{dist_info}/{n}" for n in _UNHASHED}
        if row is None and not unhashed:
            self.problem("record-missing", name, "is in the archive but not in RECORD")
        algorithm = row.algorithm if row is not None and row.digest else ""
        if row is not None and not unhashed:
            if not algorithm:
                self.problem("record-weak-hash", name, "has no hash in RECORD")
            elif algorithm in _WEAK_ALGORITHMS:
                self.problem("record-weak-hash", name, f"is hashed with {algorithm} in RECORD")
            elif algorithm not in _STRONG_ALGORITHMS:
                self.problem(
                    "record-weak-hash", name, f"uses the unsupported hash {algorithm!r} in RECORD"
                )
        sha256, other, size, keep = self._hash_member(info, algorithm, name.endswith(".pth"))
        if keep is not None:
            self.small[name] = keep
        if row is not None and not unhashed and algorithm in _STRONG_ALGORITHMS:
            digest = sha256 if algorithm == "sha256" else other
            if not _digest_matches(digest, row.digest):
                self.problem("record-mismatch", name, "does not match its hash in RECORD")
            elif row.size.strip() != str(size):
                self.problem(
                    "record-mismatch",
                    name,
                    f"is {size} bytes; RECORD says {row.size.strip() or 'nothing'}",
                )
        scheme, relpath = _location(name, dist_info, data_dir, root_scheme)
        if scheme not in SCHEME_KEYS:
            self.problem("data-scheme", name, f"is under the unknown scheme {scheme!r}")
            return
        if not relpath or is_unsafe_path(relpath):
            return
        self.members.append(Member(name, scheme, relpath, sha256.hex(), size))

    def _hash_member(
        self, info: zipfile.ZipInfo, algorithm: str, keep: bool
    ) -> tuple[bytes, bytes, int, bytes | None]:
        h256 = hashlib.sha256()
        other = (
            hashlib.new(algorithm)
            if algorithm in _STRONG_ALGORITHMS and algorithm != "sha256"
            else None
        )
        size = 0
        kept = bytearray() if keep else None
        for chunk in self._chunks(info):
            size += len(chunk)
            h256.update(chunk)
            if other is not None:
                other.update(chunk)
            if kept is not None and len(kept) < _MAX_SMALL_FILE:
                kept += chunk[: _MAX_SMALL_FILE - len(kept)]
        return (
            h256.digest(),
            other.digest() if other is not None else b"",
            size,
            bytes(kept) if kept is not None else None,
        )

    def _chunks(self, info: zipfile.ZipInfo) -> Iterator[bytes]:
        """A member's bytes. Stored and deflated members are inflated straight from the archive
        (RECORD's hash, checked by the caller, is stronger than the CRC zipfile would check);
        anything else goes through zipfile."""
        if self.raw is None or info.flag_bits & 0x1 or info.compress_type not in _RAW_METHODS:
            with self.zf.open(info) as f:
                while chunk := f.read(_CHUNK):
                    yield chunk
            return
        yield from _raw_chunks(self.raw, info)


def _raw_chunks(raw: BinaryIO, info: zipfile.ZipInfo) -> Iterator[bytes]:
    raw.seek(info.header_offset)
    header = raw.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
    local_name = raw.read(name_length)
    expected = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
    if local_name != expected:
        raise zipfile.BadZipFile(f"{info.filename}: local and central names differ")
    raw.seek(extra_length, 1)
    left = info.compress_size
    inflater = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
    produced = 0
    while left > 0:
        block = raw.read(min(_CHUNK, left))
        if not block:
            raise zipfile.BadZipFile(f"{info.filename} is truncated")
        left -= len(block)
        data = block if inflater is None else inflater.decompress(block, info.file_size + 1)
        produced += len(data)
        if produced > info.file_size:
            raise zipfile.BadZipFile(f"{info.filename} inflates past its stated size")
        yield data
    if inflater is not None:
        tail = inflater.flush()
        produced += len(tail)
        if tail:
            yield tail
    if produced != info.file_size:
        raise zipfile.BadZipFile(f"{info.filename} is not the size the archive states")


def scan_wheel(path: Path, filename: str, project: NormalizedName) -> WheelContents:
    """Read ``path`` once. Problems (RECORD, unsafe paths, special files) are returned, not
    raised; an unreadable archive is one ``invalid-wheel`` problem."""
    try:
        with path.open("rb") as raw, zipfile.ZipFile(path) as zf:
            return _Reader(zf, filename, project, raw).read()
    except (
        zipfile.BadZipFile,
        zlib.error,
        OSError,
        EOFError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        return WheelContents(
            filename=filename,
            project=project,
            dist_info="",
            members=(),
            commands=(),
            small_files={},
            problems=(Problem("invalid-wheel", filename, f"cannot be read: {exc}"),),
        )
