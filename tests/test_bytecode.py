"""Bytecode after the hand-off: the same .pyc files and RECORD rows as pip's own compilation."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

from tests.conftest import run_safepip
from tests.kit import Index, IndexServer


def _site(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def _pycs(venv: Path) -> set[str]:
    site = _site(venv)
    return {
        str(p.relative_to(site))
        for p in site.rglob("*.pyc")
        if not str(p.relative_to(site)).startswith("pip")
    }


def _record(venv: Path, dist_info: str) -> list[list[str]]:
    text = (_site(venv) / dist_info / "RECORD").read_text()
    return list(csv.reader(text.splitlines()))


def _package(index: Index) -> None:
    index.wheel(
        "pkg",
        "1.0",
        files={
            "pkg/__init__.py": b"from pkg.sub import x\n",
            "pkg/sub.py": b"x = 1\n",
            "pkg/broken.py": b"def (:\n",  # compileall cannot compile it: pip skips it too
            "pkg/data.txt": b"not python\n",
        },
    )


def _copy_venv(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


def test_bytecode_and_record_match_pips_own(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _package(index)
    plain = _copy_venv(target_venv, tmp_path / "plain")
    result = run_safepip(
        "install", "--python", str(target_venv / "bin/python"), "-i", server.simple_url, "pkg"
    )
    assert result.returncode == 0, result.stderr
    subprocess.run(
        [str(plain / "bin/python"), "-m", "pip", "install", "-q", "-i", server.simple_url, "pkg"],
        check=True,
        capture_output=True,
    )
    ours, pips = _pycs(target_venv), _pycs(plain)
    assert ours == pips
    assert any(p.startswith("pkg/__pycache__/sub.") for p in ours)
    assert not any("broken" in p for p in ours)
    assert _record(target_venv, "pkg-1.0.dist-info") == _record(plain, "pkg-1.0.dist-info")
    # Uninstalling removes every file, bytecode included, as after pip's own install.
    subprocess.run(
        [str(target_venv / "bin/python"), "-m", "pip", "uninstall", "-y", "-q", "pkg"],
        check=True,
        capture_output=True,
    )
    assert not (_site(target_venv) / "pkg").exists()


def test_no_compile_is_honoured(index: Index, server: IndexServer, target_venv: Path) -> None:
    _package(index)
    result = run_safepip(
        "install",
        "--python",
        str(target_venv / "bin/python"),
        "--no-compile",
        "-i",
        server.simple_url,
        "pkg",
    )
    assert result.returncode == 0, result.stderr
    assert (_site(target_venv) / "pkg" / "sub.py").is_file()
    assert _pycs(target_venv) == set()
    rows = _record(target_venv, "pkg-1.0.dist-info")
    assert not any(r[0].endswith(".pyc") for r in rows)


def test_target_dir_keeps_pips_compilation(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _package(index)
    where = tmp_path / "t"
    result = run_safepip(
        "install",
        "--python",
        str(target_venv / "bin/python"),
        "--target",
        str(where),
        "-i",
        server.simple_url,
        "pkg",
    )
    assert result.returncode == 0, result.stderr
    assert list((where / "pkg" / "__pycache__").glob("sub.*.pyc"))
