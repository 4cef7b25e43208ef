"""Shared fixtures: isolation from the machine's pip configuration, indexes and target venvs."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit import Index, IndexServer, isolated_environ

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SAFEPIP_NETWORK_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="touches the real default index; set SAFEPIP_NETWORK_TESTS=1")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs with an empty HOME, no inherited PIP_* and no configuration files."""
    home = tmp_path / "home"
    home.mkdir()
    for key in list(os.environ):
        if key.startswith(("PIP_", "SAFEPIP_", "VIRTUAL_ENV", "CONDA_")) or key.lower() in (
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ):
            monkeypatch.delenv(key, raising=False)
    for key, value in isolated_environ(home).items():
        monkeypatch.setenv(key, value)
    return home


@pytest.fixture(scope="session")
def _base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pristine venv per session (with pip); each test gets a copy."""
    path = tmp_path_factory.mktemp("base") / "venv"
    venv.EnvBuilder(with_pip=True, symlinks=True).create(path)
    return path


@pytest.fixture
def target_venv(tmp_path: Path, _base_venv: Path) -> Path:
    """A fresh virtual environment to install into."""
    return make_venv(tmp_path / "target", _base_venv)


@pytest.fixture
def plain_venv(tmp_path: Path, _base_venv: Path) -> Path:
    """A second fresh virtual environment, for plain pip to install into (parity checks)."""
    return make_venv(tmp_path / "plain", _base_venv)


def make_venv(path: Path, _base_venv: Path) -> Path:
    """A virtual environment with pip copied from the session's base venv."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    # Copy pip from the session's base venv so pass-through commands work without a download.
    base_site = next((_base_venv / "lib").glob("python*/site-packages"))
    site = next((path / "lib").glob("python*/site-packages"))
    for entry in base_site.iterdir():
        if entry.name.startswith("pip"):
            subprocess.run(["cp", "-a", str(entry), str(site)], check=True)
    return path


@pytest.fixture
def index() -> Index:
    return Index()


@pytest.fixture
def server(index: Index) -> Iterator[IndexServer]:
    with IndexServer(index) as srv:
        yield srv


def run_safepip(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``safepip`` as a user would, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "safepip", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else dict(os.environ),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
