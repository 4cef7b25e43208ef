"""pip parity: after `safepip install` the target reads exactly as after plain `pip install` of the
same requirements from the same index (freeze, inspect, scripts, `pip check`), and
`--dry-run --report` writes the report pip writes for the same set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_safepip
from tests.kit import Index, IndexServer, make_wheel
from tests.test_precedence import PrivateIndex


def _pip(venv: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", *args],
        capture_output=True,
        text=True,
        check=check,
        env=dict(os.environ),
    )


def _plain_pip_install(venv: Path, *args: str) -> None:
    """Plain `pip install` by the pip version safepip hands off to (script launchers and
    metadata files differ between pip versions, not between safepip and pip)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q", *args],
        check=True,
        env=dict(os.environ),
    )


def _normalized_inspect(venv: Path) -> list[dict[str, Any]]:
    """`pip inspect`'s installed entries, with this venv's path replaced by a placeholder."""
    text = _pip(venv, "inspect").stdout.replace(str(venv), "<venv>")
    installed = json.loads(text)["installed"]
    return sorted(installed, key=lambda i: i["metadata"]["name"])


def _scripts(venv: Path) -> dict[str, str]:
    out = {}
    for p in sorted((venv / "bin").iterdir()):
        if p.is_file() and not p.is_symlink() and not p.name.startswith(("activate", "pip")):
            out[p.name] = p.read_text(errors="replace").replace(str(venv), "<venv>")
    return out


def _site_files(venv: Path) -> list[str]:
    site = next((venv / "lib").glob("python*/site-packages"))
    return sorted(
        str(p.relative_to(site))
        for p in site.rglob("*")
        if "__pycache__" not in p.parts and not p.relative_to(site).parts[0].startswith("pip")
    )


def _everyday(index: Index) -> None:
    index.wheel(
        "zqweb",
        "1.0",
        requires=["zqroute>=1", "zqtempl[speedups]", "zqwin; sys_platform == 'win32'"],
        entry_points="[console_scripts]\nzqweb-serve = zqweb:__version__\n",
    )
    index.wheel(
        "zqweb",
        "1.1",
        requires=["zqroute>=2", "zqtempl[speedups]"],
        entry_points="[console_scripts]\nzqweb-serve = zqweb:__version__\n",
    )
    index.wheel("zqroute", "1.0")
    index.wheel("zqroute", "2.0", requires=["zqurl>=1"])
    index.wheel("zqroute", "2.1a1", requires=["zqurl>=1"])
    index.wheel("zqurl", "1.0")
    index.wheel("zqurl", "1.2")
    index.wheel("zqtempl", "3.0", requires=["zqmark; extra == 'speedups'"], extras=["speedups"])
    index.wheel("zqmark", "2.0")
    index.wheel("zqwin", "1.0")
    index.wheel("zqkept", "1.0")
    index.wheel("zqkept", "2.0")


def test_everyday_set_reads_as_after_plain_pip(
    index: Index, server: IndexServer, target_venv: Path, plain_venv: Path, tmp_path: Path
) -> None:
    _everyday(index)
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("zqweb\nzqkept\n")
    cons = tmp_path / "constraints.txt"
    cons.write_text("zqurl<1.2\n")
    for venv in (target_venv, plain_venv):  # the same starting point: older versions present
        _pip(venv, "install", "-q", "-i", server.simple_url, "zqroute==1.0", "zqkept==1.0")
    r = run_safepip(
        "install",
        "--python",
        str(target_venv / "bin/python"),
        "-U",
        "-i",
        server.simple_url,
        "-r",
        str(reqs),
        "-c",
        str(cons),
    )
    assert r.returncode == 0, r.stderr
    _plain_pip_install(plain_venv, "-U", "-i", server.simple_url, "-r", str(reqs), "-c", str(cons))
    ours_freeze = _pip(target_venv, "freeze", "--all").stdout.splitlines()
    assert sorted(ours_freeze) == sorted(_pip(plain_venv, "freeze", "--all").stdout.splitlines())
    assert {"zqweb==1.1", "zqroute==2.0", "zqurl==1.0", "zqkept==2.0", "zqmark==2.0"} <= set(
        ours_freeze
    )
    assert _normalized_inspect(target_venv) == _normalized_inspect(plain_venv)
    requested = {
        i["metadata"]["name"] for i in _normalized_inspect(target_venv) if i.get("requested")
    }
    # zqroute was asked for earlier, but the upgrade reinstalled it as a dependency (as pip does)
    assert requested - {"pip"} == {"zqweb", "zqkept"}
    assert _scripts(target_venv) == _scripts(plain_venv)
    assert "zqweb-serve" in _scripts(target_venv)
    assert _site_files(target_venv) == _site_files(plain_venv)
    check = _pip(target_venv, "check", check=False)
    assert check.returncode == 0, check.stdout


def _pip_report(python: Path, *args: str) -> dict[str, Any]:
    """pip's own --dry-run --report for the same target, by the pip safepip bundles."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--dry-run",
            "-q",
            "--report",
            "-",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_dry_run_report_equals_pips(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _everyday(index)
    py = target_venv / "bin/python"
    args = ["-i", server.simple_url, "zqweb<1.1", "zqkept"]
    report = tmp_path / "report.json"
    r = run_safepip("install", "--python", str(py), "--dry-run", "--report", str(report), *args)
    assert r.returncode == 0, r.stderr
    ours = json.loads(report.read_text())
    pips = _pip_report(py, *args)
    assert set(ours) - set(pips) == {"safepip"} and set(pips) <= set(ours)
    assert ours["version"] == pips["version"] and ours["environment"] == pips["environment"]

    def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {i["metadata"]["name"]: i for i in report["install"]}

    assert by_name(ours) == by_name(pips)
    assert set(by_name(ours)) == {"zqweb", "zqroute", "zqurl", "zqtempl", "zqmark", "zqkept"}


@pytest.mark.integration
def test_install_through_pypiserver(tmp_path: Path, target_venv: Path, plain_venv: Path) -> None:
    (tmp_path / "packages").mkdir()
    with_server = PrivateIndex(tmp_path / "packages")
    try:
        with_server.add(
            make_wheel("corp-app", "1.0", requires=["corp-lib>=1"]),
            make_wheel("corp-lib", "1.0"),
            make_wheel("corp-lib", "1.1"),
        )
        r = run_safepip(
            "install",
            "--python",
            str(target_venv / "bin/python"),
            "-i",
            with_server.simple_url,
            "corp-app",
        )
        assert r.returncode == 0, r.stderr
        _plain_pip_install(plain_venv, "-i", with_server.simple_url, "corp-app")
    finally:
        with_server.close()
    freeze = _pip(target_venv, "freeze").stdout.split()
    assert freeze == ["corp-app==1.0", "corp-lib==1.1"]
    assert freeze == _pip(plain_venv, "freeze").stdout.split()
    assert _normalized_inspect(target_venv) == _normalized_inspect(plain_venv)
    assert _pip(target_venv, "check", check=False).returncode == 0
