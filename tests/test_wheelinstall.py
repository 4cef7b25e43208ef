"""The direct hand-off: pip's wheel installer in one process gives what pip's command line gives
(files, modes, RECORD, INSTALLER, REQUESTED, scripts, bytecode), and fails all or nothing."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import marshal
import os
import subprocess
from base64 import urlsafe_b64encode
from pathlib import Path

import pytest

from safepip.install import pip_under
from safepip.target import probe_target
from safepip.wheelinstall import InstallerAhead
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


@pytest.mark.parametrize("quiet", [(), ("-q",)], ids=["default", "quiet"])
def test_default_output_is_pips(
    index: Index, server: IndexServer, tmp_path: Path, _base_venv: Path, quiet: tuple[str, ...]
) -> None:
    """pip's vendored libraries speak only at -v: no "changing mode" line per script."""
    _app(index)
    ours = make_venv(tmp_path / "one", _base_venv)
    run = run_safepip(
        "install", *quiet, "--python", str(ours / "bin/python"), "-i", server.simple_url, "app"
    )
    assert run.returncode == 0, run.stderr
    assert ("Successfully installed app-1.0 dep-1.0" in run.stdout) is not bool(quiet)
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


def test_what_the_installers_workers_say_reaches_the_user(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    """The installer is started before safepip has read its options, silent until the run takes
    it; then what its workers say (at -v, each command's mode) is the user's to see."""
    _app(index)
    py = str(target_venv / "bin/python")
    run = run_safepip("install", "-v", "--python", py, "-i", server.simple_url, "app")
    assert run.returncode == 0, run.stderr
    assert DIRECT in run.stdout + run.stderr
    assert f"changing mode of {target_venv}/bin/app-cli to 755" in run.stderr


def _stopped(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_an_installer_started_ahead_serves_only_the_environment_it_was_started_for(
    target_venv: Path,
) -> None:
    target = probe_target(str(target_venv / "bin/python"), explicit=True)
    not_a_venv = InstallerAhead(["app"], os.environ)
    not_a_venv.probed(dataclasses.replace(target, base_prefix=target.prefix))
    assert not_a_venv.take(target.executable) is None
    elsewhere = InstallerAhead(["--target", "out", "app"], os.environ)
    elsewhere.probed(target)
    assert elsewhere.take(target.executable) is None

    other = InstallerAhead(["app"], os.environ)
    other.probed(target)
    started = other._installer
    assert started is not None and started.alive and started._proc is not None
    pid = started._proc.pid
    assert other.take("/another/python") is None
    assert _stopped(pid)  # a guess that missed is stopped at once

    same = InstallerAhead(["-q", "app"], os.environ)
    same.probed(target)
    taken = same.take(target.executable)
    assert taken is not None and taken.alive and taken._proc is not None
    same.probed(target)  # taken: none started again
    assert same.take(target.executable) is None
    pid = taken._proc.pid
    taken.close()  # never configured: stopped, not waited for
    assert _stopped(pid)

    unused = InstallerAhead(["app"], os.environ)
    unused.probed(target)
    assert unused._installer is not None and unused._installer._proc is not None
    pid = unused._installer._proc.pid
    unused.close()
    assert _stopped(pid)
    unused.probed(target)  # closed: none started after
    assert unused._installer is None


# ---------------------------------------------------------------------------------------------
# The installer's own steps, run under the target interpreter as safepip runs them.

_DRIVER = r"""
import json, sys
program, start, case = sys.argv[1], sys.argv[2], sys.argv[3]
sys.argv = ["-c", start]
ns = {"__name__": "installer_under_test"}
exec(compile(open(program).read(), "installer", "exec"), ns)
ns["result"] = None
exec(compile(open(case).read(), "case", "exec"), ns)
print(json.dumps(ns["result"]))
"""


def _in_installer(
    venv: Path, tmp_path: Path, case: str, env: dict[str, str] | None = None
) -> object:
    """Run ``case`` with the installer program's functions in scope; returns its ``result``."""
    import json

    import pip

    from safepip.wheelinstall import _INSTALLER

    program, case_file = tmp_path / "installer.py", tmp_path / "case.py"
    program.write_text(_INSTALLER)
    case_file.write_text(case)
    start = {"pip_parent": str(Path(pip.__file__).parent.parent), "compile": True}
    run = subprocess.run(
        [str(venv / "bin/python"), "-c", _DRIVER, str(program), json.dumps(start), str(case_file)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


_MODULES = {
    "mod/plain.py": b"x = 1\n",
    "mod/warns.py": b"pattern = '\\d+'\n",  # a SyntaxWarning: compiled all the same
    "mod/broken.py": b"def (:\n",
}


def _compile_ahead_then_write(venv: Path, tmp_path: Path, env: dict[str, str] | None) -> None:
    from tests.kit import make_wheel

    filename, data = make_wheel("mod", "1.0", files=_MODULES)
    wheel = tmp_path / filename
    wheel.write_bytes(data)
    out = tmp_path / "out"
    case = f"""
import os, py_compile
members = [(m, os.path.join({str(out)!r}, m)) for m in {sorted(_MODULES)!r}]
ahead = compile_ahead({str(wheel)!r}, members)
def compile_one(path):  # write_pyc must not fall back to compiling
    raise AssertionError("compiled again: " + path)
result = {{"ahead": sorted(os.path.relpath(d, {str(out)!r}) for d in ahead)}}
for member, dest in members:
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "wb") as f:
        f.write({_MODULES!r}[member])
for member, dest in members:
    if dest in ahead:
        assert ahead[dest][0] == record_digest({_MODULES!r}[member])
        assert write_pyc(dest, ahead[dest])
        py_compile.compile(dest, cfile=dest + ".reference", doraise=True)
"""
    result = _in_installer(venv, tmp_path, case, env)
    assert result == {"ahead": ["mod/plain.py", "mod/warns.py"]}
    for name in ("plain", "warns"):
        source = out / "mod" / f"{name}.py"
        pyc = next((out / "mod" / "__pycache__").glob(f"{name}.cpython-*.pyc"))
        reference = Path(str(source) + ".reference").read_bytes()
        ours = pyc.read_bytes()
        assert ours[:16] == reference[:16], name  # magic, flags, and mtime and size or hash
        assert marshal.loads(ours[16:]) == marshal.loads(reference[16:]), name
        assert pyc.stat().st_mode == Path(str(source) + ".reference").stat().st_mode


def test_code_compiled_ahead_gives_the_pyc_py_compile_gives(
    tmp_path: Path, target_venv: Path
) -> None:
    _compile_ahead_then_write(target_venv, tmp_path, None)


def test_code_compiled_ahead_gives_hash_based_pycs_under_source_date_epoch(
    tmp_path: Path, target_venv: Path
) -> None:
    _compile_ahead_then_write(target_venv, tmp_path, {"SOURCE_DATE_EPOCH": "315532800"})


def test_code_compiled_ahead_is_used_only_for_the_source_pip_wrote(
    tmp_path: Path, target_venv: Path
) -> None:
    """A RECORD hash that is not the hash of the source compiled ahead: compiled again."""
    from tests.kit import make_wheel

    filename, data = make_wheel("mod", "1.0", files={"mod/__init__.py": b"value = 'real'\n"})
    wheel = tmp_path / filename
    wheel.write_bytes(data)
    site = _site(target_venv)
    case = f"""
import marshal, os
init = os.path.join({str(site)!r}, "mod", "__init__.py")
code = compile("value = 'forged'\\n", init, "exec")
forged = {{init: ("sha256=not-the-source", b"", marshal.dumps(code))}}
item = {{"name": "mod", "path": {str(wheel)!r}, "description": "mod==1.0", "requested": True,
        "compile": True, "warn_script_location": False}}
result = install_one(item, forged)
"""
    assert _in_installer(target_venv, tmp_path, case) == [1, 0]
    out = subprocess.run(
        [str(target_venv / "bin/python"), "-c", "import mod, sys; print(mod.value)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "real"
    pyc = next((site / "mod" / "__pycache__").glob("__init__.cpython-*.pyc"))
    assert marshal.loads(pyc.read_bytes()[16:]).co_consts[0] == "real"


def test_wheels_that_write_the_same_path_are_installed_one_after_the_other(
    tmp_path: Path, target_venv: Path
) -> None:
    from tests.kit import make_wheel

    def wheel(name: str, files: dict[str, bytes], entry_points: str | None = None) -> str:
        filename, data = make_wheel(name, "1.0", files=files, entry_points=entry_points)
        (tmp_path / filename).write_bytes(data)
        return str(tmp_path / filename)

    a = wheel("a", {"a/__init__.py": b""}, "[console_scripts]\ntool = a:main\n")
    b = wheel("b", {"b/__init__.py": b"", "a/__init__.py": b"x = 1\n"})
    c = wheel("c", {"c/__init__.py": b""}, "[console_scripts]\ntool = c:main\n")
    d = wheel("d", {"d/__init__.py": b""})
    case = f"""
standby = Standby(None)
def items(*pairs):
    return [{{"name": n, "path": p}} for n, p in pairs]
result = [
    standby.overlapping(items(("a", {a!r}), ("d", {d!r}))),
    standby.overlapping(items(("a", {a!r}), ("b", {b!r}))),
    standby.overlapping(items(("a", {a!r}), ("c", {c!r}))),
]
"""
    assert _in_installer(target_venv, tmp_path, case) == [False, True, True]


def test_a_conflict_with_what_is_installed_is_warned_about_as_pip_does(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    index.wheel("old", "1.0", requires=["dep<2"])
    index.wheel("dep", "1.0")
    index.wheel("dep", "2.0")
    py = str(target_venv / "bin/python")
    first = run_safepip("install", "--no-deps", "--python", py, "-i", server.simple_url, "old")
    assert first.returncode == 0, first.stderr
    second = run_safepip("install", "-v", "--python", py, "-i", server.simple_url, "dep==2.0")
    assert second.returncode == 0, second.stderr
    assert DIRECT in second.stdout + second.stderr
    assert (
        "ERROR: pip's dependency resolver does not currently take into account all the packages "
        "that are installed. This behaviour is the source of the following dependency conflicts."
        "\nold 1.0 requires dep<2, but you have dep 2.0 which is incompatible."
    ) in second.stderr


def test_a_conflict_check_that_fails_is_logged_and_the_install_goes_on_as_with_pip(
    tmp_path: Path, target_venv: Path
) -> None:
    case = """
import contextlib, io, logging
stream = io.StringIO()
handler = logging.StreamHandler(stream)
logging.getLogger("pip").addHandler(handler)
before = installed_now()
result = [
    conflicts_once_installed(OSError("unreadable"), []),
    stream.getvalue().startswith("Error while checking for conflicts."),
    "OSError: unreadable" in stream.getvalue(),
    conflicts_once_installed(before, []) is not None,
]
"""
    assert _in_installer(target_venv, tmp_path, case) == [None, True, True, True]
