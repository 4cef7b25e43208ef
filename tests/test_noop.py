"""The no-op fast path: nothing asked of the network or pip when the target already satisfies
the request, and the full way for anything it does not understand."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.conftest import run_safepip
from tests.kit import Index, IndexServer


def _index(index: Index) -> None:
    index.wheel("app", "1.0", requires=["lib>=1", "extra-dep; extra == 'fast'"], extras=["fast"])
    index.wheel("lib", "1.5")
    index.wheel("extra-dep", "1.0")


def _install(server: IndexServer, venv: Path, *args: str) -> str:
    result = run_safepip(
        "install", "--python", str(venv / "bin/python"), "-i", server.simple_url, *args
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _lock(index: Index, path: Path, *names: str) -> Path:
    lines = []
    for filename in names:
        f = index.find(filename)
        assert f is not None
        name, version = filename.split("-")[:2]
        lines.append(
            f"{name}=={version} \\\n    --hash=sha256:{hashlib.sha256(f.data).hexdigest()}"
        )
    path.write_text("# a hashed lock\n" + "\n".join(lines) + "\n")
    return path


def test_satisfied_hashed_lock_asks_nothing(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _index(index)
    _install(server, target_venv, "app==1.0")
    lock = _lock(
        index, tmp_path / "lock.txt", "app-1.0-py3-none-any.whl", "lib-1.5-py3-none-any.whl"
    )
    server.requests.clear()
    out = _install(server, target_venv, "--require-hashes", "-r", str(lock))
    assert server.requests == []
    assert "Requirement already satisfied: app==1.0" in out
    assert "Requirement already satisfied: lib==1.5" in out


def test_satisfied_requirement_with_extras(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    _index(index)
    _install(server, target_venv, "app[fast]")
    server.requests.clear()
    out = _install(server, target_venv, "-q", "app[fast]>=1")
    assert server.requests == []
    assert out == ""


def test_general_options_before_the_command_keep_the_fast_path(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    """``safepip --python X install ...``, as pip allows general options before the command."""
    _index(index)
    _install(server, target_venv, "app")
    server.requests.clear()
    python = str(target_venv / "bin/python")
    result = run_safepip(
        "--python", python, "--no-cache-dir", "install", "-i", server.simple_url, "app"
    )
    assert result.returncode == 0, result.stderr
    assert server.requests == []
    assert "Requirement already satisfied: app==1.0" in result.stdout


def test_missing_dependency_goes_the_full_way(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    _index(index)
    _install(server, target_venv, "app")
    server.requests.clear()
    # extra-dep is not installed: the fast path cannot say the request is satisfied.
    _install(server, target_venv, "app[fast]")
    assert server.requests
    assert list(next((target_venv / "lib").glob("python*/site-packages")).glob("extra_dep-1.0*"))


@pytest.mark.parametrize(
    "args, config, refused",
    [
        (["--upgrade", "app"], None, False),
        (["app"], "[install]\nuser = false\n", False),
        (["app"], "[global]\nextra-index-url = http://example.invalid/simple/\n", True),
    ],
)
def test_anything_unknown_goes_the_full_way(
    index: Index,
    server: IndexServer,
    target_venv: Path,
    tmp_path: Path,
    args: list[str],
    config: str | None,
    refused: bool,
) -> None:
    _index(index)
    _install(server, target_venv, "app")
    env = dict(os.environ)
    if config is not None:
        conf = tmp_path / "pip.conf"
        conf.write_text(config)
        env["PIP_CONFIG_FILE"] = str(conf)
    server.requests.clear()
    python = str(target_venv / "bin/python")
    result = run_safepip("install", "--python", python, "-i", server.simple_url, *args, env=env)
    if refused:
        # The full way refuses a plain-HTTP index, no-op or not; the fast path must not hide it.
        assert result.returncode == 3, result.stderr
        assert "insecure-index" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert server.requests, "the full way was not taken"


def _site_config(tmp_path: Path, constraint: str) -> dict[str, str]:
    """An environment whose machine-wide pip.conf (``XDG_CONFIG_DIRS``) names a constraint
    file, as a distribution or an administrator sets one."""
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(f"# machine-wide cap\n{constraint}\n")
    (tmp_path / "xdg" / "pip").mkdir(parents=True)
    (tmp_path / "xdg" / "pip" / "pip.conf").write_text(f"[global]\nconstraint = {constraints}\n")
    env = dict(os.environ)
    env["XDG_CONFIG_DIRS"] = str(tmp_path / "xdg")
    return env


def test_pip_config_file_devnull_skips_every_configuration_file(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    """pip reads no configuration file at all when ``PIP_CONFIG_FILE`` is ``os.devnull``; a
    machine-wide pip.conf must not send a satisfied request the full way then."""
    _index(index)
    _install(server, target_venv, "app")
    env = _site_config(tmp_path, "lib<1.5")
    assert env["PIP_CONFIG_FILE"] == os.devnull
    server.requests.clear()
    python = str(target_venv / "bin/python")
    result = run_safepip("install", "--python", python, "-i", server.simple_url, "app", env=env)
    assert result.returncode == 0, result.stderr
    assert server.requests == []
    assert "Requirement already satisfied: app==1.0" in result.stdout


@pytest.mark.parametrize("how", ["pip.conf", "PIP_CONSTRAINT", "-c"])
def test_a_constraint_the_installed_versions_meet_keeps_the_fast_path(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path, how: str
) -> None:
    _index(index)
    _install(server, target_venv, "app")
    env = _site_config(tmp_path, "lib<=1.5\nunrelated<1")
    args: list[str] = []
    if how != "pip.conf":
        del env["XDG_CONFIG_DIRS"]
    if how == "PIP_CONSTRAINT":
        env["PIP_CONSTRAINT"] = str(tmp_path / "constraints.txt")
    elif how == "-c":
        args = ["-c", str(tmp_path / "constraints.txt")]
    else:
        del env["PIP_CONFIG_FILE"]
    server.requests.clear()
    python = str(target_venv / "bin/python")
    result = run_safepip(
        "install", "--python", python, "-i", server.simple_url, *args, "app", env=env
    )
    assert result.returncode == 0, result.stderr
    assert server.requests == []
    assert "Requirement already satisfied: app==1.0" in result.stdout


def test_a_constraint_an_installed_dependency_breaks_goes_the_full_way(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    """As pip: the installed lib 1.5 does not meet the machine's ``lib<1.5``, so the request is
    not satisfied and lib is replaced by a version that meets it."""
    _index(index)
    index.wheel("lib", "1.4")
    _install(server, target_venv, "app")
    env = _site_config(tmp_path, "lib<1.5")
    del env["PIP_CONFIG_FILE"]
    server.requests.clear()
    python = str(target_venv / "bin/python")
    result = run_safepip("install", "--python", python, "-i", server.simple_url, "app", env=env)
    assert result.returncode == 0, result.stderr
    assert server.requests, "the full way was not taken"
    site = next((target_venv / "lib").glob("python*/site-packages"))
    assert list(site.glob("lib-1.4.dist-info")), sorted(p.name for p in site.iterdir())


def _fake_venv(root: Path, *entries: str, system_site: bool = False) -> Path:
    (root / "bin").mkdir(parents=True)
    flag = "true" if system_site else "false"
    (root / "pyvenv.cfg").write_text(f"home = /usr/bin\ninclude-system-site-packages = {flag}\n")
    site = root / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    for entry in entries:
        (site / entry).mkdir() if not entry.endswith(".pth") else (site / entry).write_text("")
    return root / "bin" / "python"


def test_a_project_missing_from_a_venv_is_seen_without_running_it(tmp_path: Path) -> None:
    from packaging.requirements import Requirement

    from safepip.noop import _Line, _surely_missing

    def lines(*specs: str) -> list[_Line]:
        return [_Line(Requirement(s), ()) for s in specs]

    py = _fake_venv(tmp_path / "a", "Typing_Extensions-4.0.dist-info", "six-1.0-py3.11.egg-info")
    assert _surely_missing(py, lines("typing-extensions==4.0", "lib==1"))
    assert not _surely_missing(py, lines("typing_extensions", "SIX"))
    # A marker needs the target's own values: not decided here.
    assert not _surely_missing(py, lines("lib; python_version < '3'"))
    # A .pth file may add places to look, system site-packages are outside the venv.
    with_pth = _fake_venv(tmp_path / "b", "six-1.0.dist-info", "extra.pth")
    assert not _surely_missing(with_pth, lines("lib"))
    system = _fake_venv(tmp_path / "c", system_site=True)
    assert not _surely_missing(system, lines("lib"))
    assert not _surely_missing(tmp_path / "nowhere" / "bin" / "python", lines("lib"))


_COMPARE = r"""
import contextlib, io, json, sys
ns = {"__name__": "probe_under_test"}
with contextlib.redirect_stdout(io.StringIO()):
    exec(compile(sys.argv[1], "probe", "exec"), ns)
fast = None
try:
    fast = ns["read_dists"]()
except ns["Unusual"]:
    pass
print(json.dumps({"fast": fast, "importlib": ns["read_dists_by_importlib"]()}))
"""


def _probe_readers(venv: Path) -> dict[str, object]:
    import json
    import subprocess

    from safepip.noop import _PROBE

    out = subprocess.run(
        [str(venv / "bin/python"), "-E", "-c", _COMPARE, _PROBE],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    assert isinstance(data, dict)
    return data


def test_the_probe_reads_installed_distributions_as_importlib_metadata_does(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    index.wheel("lib", "1.0", requires=["dep>=1; python_version >= '3'", "extra-dep; extra == 'x'"])
    index.wheel("dep", "2.0")
    py = str(target_venv / "bin/python")
    assert run_safepip("install", "--python", py, "-i", server.simple_url, "lib").returncode == 0
    data = _probe_readers(target_venv)
    assert data["fast"] == data["importlib"]
    names = {d[0] for d in data["fast"].values()}  # type: ignore[union-attr]
    assert {"lib", "dep", "pip"} <= names
    # An egg-info (or anything else unusual) is left to importlib.metadata.
    site = next((target_venv / "lib").glob("python*/site-packages"))
    egg = site / "old.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: old\nVersion: 0.1\n")
    data = _probe_readers(target_venv)
    assert data["fast"] is None
    assert "old" in data["importlib"]  # type: ignore[operator]
