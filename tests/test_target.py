"""Which environment safepip installs into: the one `pip` would have meant, never its own."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from safepip.errors import PolicyRefusal, TargetError
from safepip.target import find_interpreter, probe_ahead, probe_target
from tests.conftest import run_safepip
from tests.kit import Index, IndexServer

_PYENV = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"


def _pyenv_python(prefix: str) -> Path | None:
    """A python of the given minor version from pyenv (e.g. "3.12"), if the machine has one."""
    for version in sorted(_PYENV.glob(prefix + ".*"), reverse=True):
        exe = version / "bin" / f"python{prefix}"
        if exe.exists():
            return exe
    return None


def _fake_env(root: Path) -> Path:
    """A directory laid out like an environment: bin/python and bin/python3 (symlinks)."""
    (root / "bin").mkdir(parents=True)
    for name in ("python", "python3"):
        (root / "bin" / name).symlink_to(Path(sys.base_prefix) / "bin" / "python3")
    return root


def test_python_option_wins(tmp_path: Path) -> None:
    env = _fake_env(tmp_path / "named")
    other = _fake_env(tmp_path / "active")
    environ = {"VIRTUAL_ENV": str(other), "PATH": str(other / "bin")}
    assert find_interpreter(str(env / "bin/python"), environ) == (str(env / "bin/python"), True)
    assert find_interpreter(str(env), environ) == (str(env / "bin/python"), True)
    with pytest.raises(TargetError, match="could not locate"):
        find_interpreter(str(tmp_path / "missing"), environ)


def test_virtual_env_then_conda_then_path(tmp_path: Path) -> None:
    venv_dir = _fake_env(tmp_path / "venv")
    conda = _fake_env(tmp_path / "conda")
    on_path = _fake_env(tmp_path / "onpath")
    environ = {
        "VIRTUAL_ENV": str(venv_dir),
        "CONDA_PREFIX": str(conda),
        "PATH": str(on_path / "bin"),
    }
    assert find_interpreter(None, environ) == (str(venv_dir / "bin/python"), False)
    del environ["VIRTUAL_ENV"]
    assert find_interpreter(None, environ) == (str(conda / "bin/python"), False)
    del environ["CONDA_PREFIX"]
    assert find_interpreter(None, environ) == (str(on_path / "bin/python3"), False)


def test_path_skips_safepips_own_prefix(tmp_path: Path) -> None:
    on_path = _fake_env(tmp_path / "onpath")
    own_bin = str(Path(sys.prefix) / "bin")
    environ = {"PATH": os.pathsep.join([own_bin, str(on_path / "bin")])}
    assert find_interpreter(None, environ) == (str(on_path / "bin/python3"), False)
    with pytest.raises(TargetError, match="no target Python"):
        find_interpreter(None, {"PATH": own_bin})


def test_own_environment_refused_unless_named() -> None:
    with pytest.raises(PolicyRefusal, match="safepip's own environment"):
        probe_target(sys.executable, explicit=False)
    target = probe_target(sys.executable, explicit=True)
    assert target.version[:2] == sys.version_info[:2]


def test_probe_started_ahead_serves_its_interpreter_once(target_venv: Path) -> None:
    python = str(target_venv / "bin" / "python")
    ahead = probe_ahead(["-q", "--python", python, "x"], {"PATH": os.defpath})
    assert ahead is not None and ahead.python == python
    assert ahead.take(sys.executable) is None  # another interpreter: probed anew
    assert ahead.take(python) is not None
    assert ahead.take(python) is None  # once only: a second probe sees the environment anew
    fresh = probe_ahead([f"--python={python}"], {"PATH": os.defpath})
    assert fresh is not None
    target = probe_target(python, explicit=True, ahead=fresh)
    assert target.prefix == probe_target(python, explicit=True).prefix
    assert probe_ahead(["--python", "/no/such/python"], {"PATH": os.defpath}) is None


def test_activated_own_environment_is_refused_end_to_end(index: Index, server: IndexServer) -> None:
    index.wheel("a", "1.0")
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix}
    r = run_safepip("install", "--dry-run", "-i", server.simple_url, "a", env=env)
    assert r.returncode == 3, r.stderr
    assert "target-is-safepip" in r.stderr and "--python" in r.stderr
    assert not server.requests  # refused before any page was fetched
    r = run_safepip(
        "install", "--dry-run", "--python", sys.executable, "-i", server.simple_url, "a", env=env
    )
    assert r.returncode == 0, r.stderr
    assert "Would install a-1.0" in r.stdout


def test_too_old_target_is_refused_clearly() -> None:
    old = _pyenv_python("3.9")
    if old is None:
        pytest.skip("no Python 3.9 on this machine")
    r = run_safepip("install", "--dry-run", "--python", str(old), "a")
    assert r.returncode == 1, r.stderr
    assert "target-too-old" in r.stderr and "3.9" in r.stderr and "3.10+" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_other_interpreter_markers_and_tags(
    index: Index, server: IndexServer, tmp_path: Path
) -> None:
    """A target of another Python version: markers, tags and requires-python are its own."""
    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    other_version = next(
        (v for v in ("3.12", "3.13", "3.10", "3.11") if v != mine and _pyenv_python(v)), None
    )
    if other_version is None:
        pytest.skip("no second Python version on this machine")
    other = _pyenv_python(other_version)
    assert other is not None
    target = tmp_path / "other"
    subprocess.run([str(other), "-m", "venv", "--without-pip", str(target)], check=True)
    tag = "cp" + other_version.replace(".", "")
    index.wheel(
        "app",
        "1.0",
        requires=[
            f"only-there; python_version == '{other_version}'",
            f"only-here; python_version == '{mine}'",
        ],
    )
    index.wheel("only-there", "1.0", tag=f"{tag}-none-any")
    index.wheel("only-there", "2.0", requires_python=f"!={other_version}.*")
    index.wheel("only-here", "1.0")
    r = run_safepip(
        "install", "--python", str(target / "bin/python"), "-i", server.simple_url, "app"
    )
    assert r.returncode == 0, r.stderr
    site = next((target / "lib").glob("python*/site-packages"))
    assert site.parent.name == f"python{other_version}"
    installed = sorted(p.name for p in site.glob("*.dist-info"))
    assert installed == ["app-1.0.dist-info", "only_there-1.0.dist-info"]


def test_venv_helper_is_a_virtualenv(tmp_path: Path) -> None:
    """The real-venv case of the probe: prefix differs from base_prefix."""
    path = tmp_path / "v"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
    target = probe_target(str(path / "bin/python"), explicit=True)
    assert target.is_virtualenv and not target.externally_managed


def test_relative_python_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe runs in a private directory: a relative --python must not lose its way."""
    _fake_env(tmp_path / "rel")
    monkeypatch.chdir(tmp_path)
    assert find_interpreter("rel/bin/python", {}) == (str(tmp_path / "rel/bin/python"), True)
    assert find_interpreter("rel", {}) == (str(tmp_path / "rel/bin/python"), True)
    assert probe_target("rel/bin/python", explicit=True).version >= (3, 10, 0)
