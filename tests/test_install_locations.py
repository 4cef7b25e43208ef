"""Where pip's location options put files: --target (with --platform and friends), --prefix,
--root and --user all install the verified files where plain pip would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_safepip
from tests.kit import Index, IndexServer


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "__pycache__")


def test_target_with_foreign_platform(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    """--target with --platform/--python-version/--implementation/--abi: wheels for that
    platform, installed into the directory only, nothing into the environment."""
    index.wheel("app", "1.0", requires=["native"])
    index.wheel("native", "1.0", tag="cp39-cp39-win_amd64")
    index.wheel("native", "2.0", tag="cp312-cp312-manylinux2014_x86_64")
    out = tmp_path / "vendored"
    r = run_safepip(
        "install",
        "--python",
        str(target_venv / "bin/python"),
        "--target",
        str(out),
        "--platform",
        "win_amd64",
        "--python-version",
        "3.9",
        "--implementation",
        "cp",
        "--abi",
        "cp39",
        "--no-compile",
        "-i",
        server.simple_url,
        "app",
    )
    assert r.returncode == 0, r.stderr
    assert _names(out) == ["app", "app-1.0.dist-info", "native", "native-1.0.dist-info"]
    assert not list(out.rglob("*.pyc"))  # --no-compile reached pip
    site = next((target_venv / "lib").glob("python*/site-packages"))
    assert not (site / "app").exists()


def test_custom_tags_need_target(index: Index, server: IndexServer, target_venv: Path) -> None:
    index.wheel("app", "1.0")
    r = run_safepip(
        "install",
        "--python",
        str(target_venv / "bin/python"),
        "--platform",
        "win_amd64",
        "-i",
        server.simple_url,
        "app",
    )
    assert r.returncode == 2 and "--target" in r.stderr


def test_prefix_and_root(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    index.wheel("app", "1.0", entry_points="[console_scripts]\napp-run = app:__version__\n")
    py = str(target_venv / "bin/python")
    prefix = tmp_path / "prefix"
    r = run_safepip(
        "install", "--python", py, "--prefix", str(prefix), "-i", server.simple_url, "app"
    )
    assert r.returncode == 0, r.stderr
    assert (prefix / "bin" / "app-run").exists()
    assert list(prefix.glob("lib/python*/site-packages/app/__init__.py"))
    root = tmp_path / "root"
    r = run_safepip("install", "--python", py, "--root", str(root), "-i", server.simple_url, "app")
    assert r.returncode == 0, r.stderr
    site = next((target_venv / "lib").glob("python*/site-packages"))
    assert (root / str(site).lstrip("/") / "app" / "__init__.py").exists()
    assert not (site / "app").exists()


def test_user_install_into_user_site(index: Index, server: IndexServer, tmp_path: Path) -> None:
    """--user on an interpreter that is not a venv: the files land in its user site."""
    python = Path(sys.base_prefix) / "bin" / "python3"
    index.wheel("app", "1.0")
    userbase = tmp_path / "userbase"
    env = {**os.environ, "PYTHONUSERBASE": str(userbase)}
    r = run_safepip(
        "install", "--python", str(python), "--user", "-i", server.simple_url, "app", env=env
    )
    if "externally-managed" in r.stderr:
        pytest.skip("the base interpreter here is externally managed")
    assert r.returncode == 0, r.stderr
    assert list(userbase.glob("lib/python*/site-packages/app/__init__.py"))
    freeze = subprocess.run(
        [str(python), "-m", "pip", "list", "--user", "--format=freeze"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    ).stdout
    assert "app==1.0" in freeze
