"""An sdist's static build requirements: the quick gzip-tar scan gives tarfile's answer."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from safepip.buildsystem import (
    _read_member_tarfile,
    _scan_tar_gz,
    _Undecided,
    static_build_requires,
)
from safepip.errors import PolicyRefusal

PYPROJECT = b'[build-system]\nrequires = ["flit_core>=3.4,<4"]\n'
LONG = "p-1.0/" + "/".join(["deeply-nested-directory"] * 6) + "/module.py"  # over 100 chars
FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _entry(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


SCENARIOS = {
    "first": [_file("p-1.0/pyproject.toml", PYPROJECT), _file("p-1.0/setup.py", b"x")],
    # several chunks of incompressible data to skip, and a name too long for one header
    "after-data": [
        _file("p-1.0/blob.bin", os.urandom(3 * 1024 * 1024 + 17)),
        _file(LONG, b"print('hi')\n"),
        _entry("p-1.0/docs", tarfile.DIRTYPE),
        _entry("p-1.0/link", tarfile.SYMTYPE, "setup.py"),
        _file("p-1.0/pyproject.toml", PYPROJECT),
    ],
    "long-top": [_file("p-" + "1" * 120 + "/pyproject.toml", PYPROJECT)],
    "nested-only": [_file("p-1.0/sub/pyproject.toml", PYPROJECT), _file("p-1.0/a.py", b"")],
    "none": [_file("p-1.0/setup.py", b"from setuptools import setup\nsetup()\n")],
    "first-wins": [
        _file("p-1.0/pyproject.toml", PYPROJECT),
        _file("q-1.0/pyproject.toml", b"[build-system]\nrequires = ['other']\n"),
    ],
    "symlink": [_entry("p-1.0/pyproject.toml", tarfile.SYMTYPE, "elsewhere.toml")],
    "directory": [_entry("p-1.0/pyproject.toml", tarfile.DIRTYPE)],
    "too-large": [_file("p-1.0/pyproject.toml", b"#" * (1024 * 1024 + 1))],
}


def _archive(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int) -> Path:
    path = tmp_path / "p-1.0.tar.gz"
    with tarfile.open(path, "w:gz", format=fmt) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _outcome(read: object, path: Path) -> object:
    try:
        return read(path, path.name)  # type: ignore[operator]
    except PolicyRefusal as exc:
        return f"refused: {exc}"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_quick_scan_decides_as_tarfile_does(tmp_path: Path, fmt: str, scenario: str) -> None:
    path = _archive(tmp_path, SCENARIOS[scenario], FORMATS[fmt])
    expected = _outcome(_read_member_tarfile, path)
    assert _outcome(_scan_tar_gz, path) == expected  # decided, not handed to tarfile
    if scenario in ("first", "after-data", "long-top", "first-wins"):
        assert expected == PYPROJECT
    elif scenario in ("nested-only", "none"):
        assert expected is None
    else:
        assert isinstance(expected, str) and expected.startswith("refused:")


def test_what_the_scan_does_not_read_goes_to_tarfile(tmp_path: Path) -> None:
    # A size in base-256 (GNU's encoding for sizes past 8 GiB octal), and an archive cut short.
    info, data = _file("p-1.0/pyproject.toml", PYPROJECT)
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[124:136] = b"\x80" + (len(PYPROJECT)).to_bytes(11, "big")
    header[148:156] = b" " * 8
    header[148:155] = f"{sum(header):06o}\0".encode()
    raw = bytes(header) + data + b"\0" * (512 - len(data) % 512) + b"\0" * 1024
    big = tmp_path / "big-1.0.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(raw)) as check:
        assert check.getmember("p-1.0/pyproject.toml").size == len(PYPROJECT)
    import gzip

    big.write_bytes(gzip.compress(raw))
    with pytest.raises(_Undecided):
        _scan_tar_gz(big, big.name)
    assert static_build_requires(big, big.name) == ("flit_core>=3.4,<4",)

    whole = _archive(tmp_path, SCENARIOS["after-data"], tarfile.PAX_FORMAT).read_bytes()
    cut = tmp_path / "cut-1.0.tar.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(_Undecided):
        _scan_tar_gz(cut, cut.name)
    with pytest.raises(PolicyRefusal, match="not a readable archive"):
        static_build_requires(cut, cut.name)


def test_a_gzip_bomb_is_inflated_a_bounded_chunk_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 64 MiB of zeros after one member: the scan stops at the first zero block, having asked
    # zlib for a chunk or two of output, not for the whole of it.
    import gzip

    from safepip import buildsystem

    first, data = _file("p-1.0/setup.py", b"x")
    raw = first.tobuf(tarfile.USTAR_FORMAT) + data + b"\0" * 511 + b"\0" * (64 << 20)
    bomb = tmp_path / "bomb-1.0.tar.gz"
    bomb.write_bytes(gzip.compress(raw, compresslevel=9))
    assert bomb.stat().st_size < 1 << 20
    made: list[int] = []
    more = buildsystem._Inflated._more

    def counted(self: buildsystem._Inflated) -> bool:
        before = len(self._buffer) - self._pos
        going = more(self)
        made.append(len(self._buffer) - self._pos - before)
        return going

    monkeypatch.setattr(buildsystem._Inflated, "_more", counted)
    assert _scan_tar_gz(bomb, bomb.name) is None
    assert 0 < len(made) <= 2 and max(made) <= buildsystem._INFLATE
