"""The direct hand-off: pip's wheel installer in one process gives what pip's command line gives
(files, modes, RECORD, INSTALLER, REQUESTED, scripts, bytecode), and fails all or nothing."""

from __future__ import annotations

import csv
import hashlib
import marshal
import os
import subprocess
from base64 import urlsafe_b64encode
from pathlib import Path

from safepip.install import pip_under
from tests.conftest import make_venv, run_safepip
from tests.kit import Index, IndexServer, tree_digest

DIRECT = "installing the verified wheels with pip's wheel installer"


def _site(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def _app(index: Index, version: str = "1.0") -> None:
    data = f"app-{version}.data"
    index.wheel(
        "app",
        version,
        requires=["dep"],
        files={
            "app/__init__.py": b"from app.sub.mod import x\n",
            "app/sub/__init__.py": b"",
            "app/sub/mod.py": b"x = 1\n",
            "app/broken.py": b"def (:\n",  # compileall cannot compile it: pip skips it too
            "app/table.txt": b"not python\n",
            f"{data}/scripts/tool": b"#!python\nprint('tool')\n",
            f"{data}/scripts/plain.sh": b"#!/bin/sh\necho plain\n",
            f"{data}/data/share/app/notes.txt": b"notes\n",
            f"{data}/purelib/app_extra.py": b"y = 2\n",
        },
        entry_points=(
            "[console_scripts]\napp-cli = app:main\n[gui_scripts]\napp-gui = app.sub:run\n"
        ),
    )
    index.wheel("dep", "1.0")


def _files(venv: Path) -> dict[str, Path]:
    out = {}
    for path in venv.rglob("*"):
        rel = str(path.relative_to(venv))
        # (pip itself, and the activation scripts that name the environment, are not installed)
        if path.is_file() and "site-packages/pip" not in rel and "bin/activate" not in rel:
            out[rel] = path
    return out


def _record_is_true(venv: Path, dist_info: str) -> list[str]:
    """Every RECORD row's hash and size match the installed file; returns the paths."""
    site = _site(venv)
    rows = list(csv.reader((site / dist_info / "RECORD").read_text().splitlines()))
    for path, digest, size in rows:
        if digest:
            data = (site / path).read_bytes()
            algo, _, value = digest.partition("=")
            ours = urlsafe_b64encode(hashlib.new(algo, data).digest()).rstrip(b"=").decode()
            assert (ours, len(data)) == (value, int(size)), path
    return [r[0] for r in rows]


def _same_bytecode(a: Path, b: Path) -> None:
    """The same code (marshal may intern strings differently from one process to the next)
    and headers that each match their own source file."""
    da, db = a.read_bytes(), b.read_bytes()
    assert da[:8] == db[:8] and da[12:16] == db[12:16], a
    assert marshal.loads(da[16:]) == marshal.loads(db[16:]), a
    for data, pyc in ((da, a), (db, b)):
        source = pyc.parent.parent / (pyc.name.split(".")[0] + ".py")
        assert int.from_bytes(data[8:12], "little") == int(source.stat().st_mtime), pyc


def test_direct_install_gives_what_pip_gives(
    index: Index, server: IndexServer, tmp_path: Path, _base_venv: Path
) -> None:
    _app(index)
    ours, pips = make_venv(tmp_path / "one", _base_venv), make_venv(tmp_path / "two", _base_venv)
    run = run_safepip(
        "install", "-v", "--python", str(ours / "bin/python"), "-i", server.simple_url, "app"
    )
    assert run.returncode == 0, run.stderr
    assert DIRECT in run.stdout + run.stderr
    assert "Successfully installed app-1.0 dep-1.0" in run.stdout
    # The pip safepip hands off to (its own, under the target interpreter), run as a user would.
    pip = pip_under(str(pips / "bin/python"))
    subprocess.run(
        [*pip, "install", "-q", "-i", server.simple_url, "app"], check=True, capture_output=True
    )
    mine, theirs = _files(ours), _files(pips)
    assert sorted(mine) == sorted(theirs)
    site = str(_site(ours).relative_to(ours))
    assert f"{site}/app/__pycache__/__init__.cpython-" in "\n".join(mine)
    assert not any("broken.cpython" in p for p in mine)
    for rel, path in mine.items():
        other = theirs[rel]
        assert path.stat().st_mode == other.stat().st_mode, rel
        if rel.endswith(".pyc"):
            _same_bytecode(path, other)
        elif not rel.endswith("/RECORD"):
            text = path.read_bytes().replace(str(ours).encode(), str(pips).encode())
            assert text == other.read_bytes(), rel
    for dist_info in ("app-1.0.dist-info", "dep-1.0.dist-info"):
        assert _record_is_true(ours, dist_info) == _record_is_true(pips, dist_info)
    assert (_site(ours) / "app-1.0.dist-info" / "REQUESTED").exists()
    assert not (_site(ours) / "dep-1.0.dist-info" / "REQUESTED").exists()
    assert (_site(ours) / "dep-1.0.dist-info" / "INSTALLER").read_text() == "pip\n"
    tool = (ours / "bin" / "tool").read_text()
    assert tool.startswith(f"#!{ours}/bin/python")
    cli = subprocess.run([str(ours / "bin" / "app-cli")], capture_output=True, text=True)
    assert "main" in cli.stderr  # the launcher runs and imports app (which has no main)


def test_default_output_is_pips(
    index: Index, server: IndexServer, tmp_path: Path, _base_venv: Path
) -> None:
    """pip's vendored libraries speak only at -v: no "changing mode" line per script."""
    _app(index)
    ours = make_venv(tmp_path / "one", _base_venv)
    run = run_safepip(
        "install", "--python", str(ours / "bin/python"), "-i", server.simple_url, "app"
    )
    assert run.returncode == 0, run.stderr
    assert "Successfully installed app-1.0 dep-1.0" in run.stdout
    assert "changing mode" not in run.stdout + run.stderr
    assert (ours / "bin" / "app-cli").exists()


def test_replacing_an_installed_distribution_goes_through_pips_command_line(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    index.wheel("dep", "1.0")
    index.wheel("dep", "2.0")
    py = str(target_venv / "bin/python")
    first = run_safepip("install", "-v", "--python", py, "-i", server.simple_url, "dep==1.0")
    assert first.returncode == 0, first.stderr
    assert DIRECT in first.stdout + first.stderr
    second = run_safepip("install", "-v", "--python", py, "-i", server.simple_url, "dep==2.0")
    assert second.returncode == 0, second.stderr
    assert DIRECT not in second.stdout + second.stderr
    assert {p.name for p in _site(target_venv).glob("dep-*.dist-info")} == {"dep-2.0.dist-info"}


def test_a_wheel_pip_refuses_part_way_leaves_the_environment_as_it_was(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    for i in range(5):
        index.wheel(f"lib{i}", "1.0", entry_points=f"[console_scripts]\nlib{i}-cli = lib{i}:m\n")
    # pip checks entry points only while installing the wheel: it fails after the others.
    index.wheel(
        "zbroken",
        "1.0",
        requires=[f"lib{i}" for i in range(5)],
        entry_points="[console_scripts]\nzbroken = zbroken\n",
    )
    before = tree_digest(target_venv)
    py = str(target_venv / "bin/python")
    run = run_safepip("install", "-v", "--python", py, "-i", server.simple_url, "zbroken")
    assert run.returncode == 1, run.stderr
    assert DIRECT in run.stdout + run.stderr
    assert "pip-failed" in run.stderr and "restored" in run.stderr
    assert "Traceback" not in run.stderr
    assert tree_digest(target_venv) == before
    assert not any(name.startswith("lib") for name in os.listdir(_site(target_venv)))
