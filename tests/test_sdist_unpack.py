"""Unpacking sdists as untrusted data: what is refused, and what an ordinary sdist gives."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from safepip.build import DEFAULT_BACKEND, BuildFailed, read_build_system
from safepip.sdist import ArchiveCaps, UnsafeArchive, unpack_sdist


def _tar(tmp_path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    path = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    return path


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


SETUP = ("pkg-1.0/setup.py", b"from setuptools import setup\nsetup()\n")


def test_ordinary_sdist_unpacks_to_its_project_dir(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path,
        [
            SETUP,
            ("pkg-1.0/pkg/__init__.py", b"x = 1\n"),
            _link("pkg-1.0/alias.py", "pkg/__init__.py"),
        ],
    )
    root = unpack_sdist(archive, archive.name, tmp_path / "out")
    assert root == tmp_path / "out" / "pkg-1.0"
    assert (root / "pkg" / "__init__.py").read_bytes() == b"x = 1\n"
    assert (root / "alias.py").read_bytes() == b"x = 1\n"


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (("pkg-1.0/../../evil.py", b"x"), "leaving its directory"),
        (("/etc/evil", b"x"), "absolute path"),
        (_link("pkg-1.0/up", "../../../etc/passwd"), "points outside"),
        (_link("pkg-1.0/abs", "/etc/passwd"), "points outside"),
        (_link("pkg-1.0/hard", "pkg-1.0/missing", tarfile.LNKTYPE), "no target"),
    ],
)
def test_escaping_members_are_refused(tmp_path: Path, member: object, message: str) -> None:
    archive = _tar(tmp_path, [SETUP, member])  # type: ignore[list-item]
    with pytest.raises(UnsafeArchive, match=message):
        unpack_sdist(archive, archive.name, tmp_path / "out")
    assert not (tmp_path / "evil.py").exists() and not Path("/etc/evil").exists()


def test_a_file_listed_twice_keeps_the_later_copy(tmp_path: Path) -> None:
    archive = _tar(tmp_path, [SETUP, ("pkg-1.0/LICENSE", b"old"), ("pkg-1.0/LICENSE", b"new")])
    root = unpack_sdist(archive, archive.name, tmp_path / "out")
    assert (root / "LICENSE").read_bytes() == b"new"


def test_devices_are_refused(tmp_path: Path) -> None:
    device = tarfile.TarInfo("pkg-1.0/dev")
    device.type = tarfile.CHRTYPE
    archive = _tar(tmp_path, [SETUP, device])
    with pytest.raises(UnsafeArchive, match="special member"):
        unpack_sdist(archive, archive.name, tmp_path / "out")


def test_size_and_count_caps(tmp_path: Path) -> None:
    archive = _tar(tmp_path, [SETUP, ("pkg-1.0/big.bin", b"\0" * 200_000)])
    with pytest.raises(UnsafeArchive, match="unpacks to more than"):
        unpack_sdist(archive, archive.name, tmp_path / "a", ArchiveCaps(max_total_bytes=100_000))
    with pytest.raises(UnsafeArchive, match="more than 1 members"):
        unpack_sdist(archive, archive.name, tmp_path / "b", ArchiveCaps(max_members=1))


def test_zip_sdist_with_symlink_out_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pkg-1.0.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg-1.0/setup.py", SETUP[1])
        link = zipfile.ZipInfo("pkg-1.0/link")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "../../outside")
    with pytest.raises(UnsafeArchive, match="points outside"):
        unpack_sdist(path, path.name, tmp_path / "out")


def test_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "pkg-1.0.tar.gz"
    path.write_bytes(b"not a tarball")
    with pytest.raises(UnsafeArchive, match="not a readable sdist"):
        unpack_sdist(path, path.name, tmp_path / "out")


def test_build_system_defaults_and_checks(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text("")
    legacy = read_build_system(tmp_path, "x")
    assert legacy.backend == DEFAULT_BACKEND and legacy.requires == ("setuptools>=40.8.0",)
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["flit_core"]\nbuild-backend = "flit_core.buildapi"\n'
    )
    assert read_build_system(tmp_path, "x").backend == "flit_core.buildapi"
    (tmp_path / "pyproject.toml").write_text('[build-system]\nrequires = "setuptools"\n')
    with pytest.raises(BuildFailed, match="malformed"):
        read_build_system(tmp_path, "x")
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "b"\nbackend-path = ["../.."]\n'
    )
    with pytest.raises(Exception, match="outside the source tree"):
        read_build_system(tmp_path, "x")
