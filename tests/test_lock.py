"""safepip lock: pylock.toml and hashed requirements files, installing from them, and the
require-hashes rules, against real local indexes and real virtual environments."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.pylock import Pylock

from tests.conftest import run_safepip
from tests.kit import Index, IndexServer, tree_digest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

BIN = Path(sys.executable).parent
HERE_TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"


def _site(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def _installed(venv: Path) -> set[str]:
    return {p.name for p in _site(venv).glob("*.dist-info")}


def _set(index: Index) -> None:
    """A small set with a platform wheel, an sdist, an extra and a platform-only dependency."""
    index.wheel(
        "app",
        "1.0",
        requires=["lib>=2", "extra-dep; extra == 'fast'", "win-only; sys_platform == 'win32'"],
        extras=["fast"],
    )
    index.wheel("app", "0.9", requires=["lib"])
    index.wheel("lib", "1.0")
    index.wheel("lib", "2.1", requires=["leaf"])
    index.wheel("lib", "2.1", requires=["leaf"], tag=f"{HERE_TAG}-{HERE_TAG}-manylinux_2_17_x86_64")
    index.wheel("lib", "2.1", requires=["leaf"], tag="cp39-cp39-win_amd64")
    index.sdist(
        "lib",
        "2.1",
        requires=["leaf"],
        pyproject='[build-system]\nrequires = ["flit-core>=3,<4"]\n'
        'build-backend = "flit_core.buildapi"\n',
    )
    index.wheel("leaf", "0.1")
    index.wheel("leaf", "0.2", yanked="broken")
    index.wheel("extra-dep", "1.0")
    index.wheel("win-only", "1.0")
    index.wheel("flit-core", "3.9")
    index.wheel("flit-core", "4.0")


def _lock(
    server: IndexServer, target: Path, cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return run_safepip(
        "--python", str(target / "bin/python"), "lock", "-i", server.simple_url, *args, cwd=cwd
    )


def _pins_and_hashes(requirements_text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """{name: (version, {sha256, ...})} of a hashed requirements file."""
    joined = requirements_text.replace("\\\n", " ")
    out = {}
    for line in joined.splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", line)
        if m:
            name = m.group(1).lower().replace("_", "-")
            out[name] = (m.group(2), frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", line)))
    return out


def test_pylock_records_every_file_and_is_deterministic(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _set(index)
    r = _lock(server, target_venv, tmp_path, "app[fast]")
    assert r.returncode == 0, r.stderr
    first = (tmp_path / "pylock.toml").read_bytes()
    r = _lock(server, target_venv, tmp_path, "app[fast]")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pylock.toml").read_bytes() == first

    lock = Pylock.from_dict(tomllib.loads(first.decode()))
    packages = {p.name: p for p in lock.packages}
    assert {n: str(p.version) for n, p in packages.items()} == {
        "app": "1.0",
        "lib": "2.1",
        "leaf": "0.1",
        "extra-dep": "1.0",
    }
    lib = packages["lib"]
    listed = {f.filename: f for f in index.projects["lib"] if "-2.1" in f.filename}
    recorded = {w.name: w for w in lib.wheels or []}
    assert lib.sdist is not None and lib.sdist.name == "lib-2.1.tar.gz"
    recorded[lib.sdist.name] = lib.sdist  # type: ignore[assignment]
    assert set(recorded) == set(listed)  # all wheels, every platform, and the sdist
    for filename, entry in recorded.items():
        assert entry.hashes == {"sha256": listed[filename].sha256}
        assert entry.size == len(listed[filename].data)
        assert entry.upload_time is not None
    assert lib.index == server.simple_url
    assert lock.environments and len(lock.environments) == 1
    assert f'python_version == "{sys.version_info[0]}.{sys.version_info[1]}"' in str(
        lock.environments[0]
    )
    # The companion build constraints: flit-core for the lib sdist, newest allowed, hashed.
    build = (tmp_path / "pylock.build-constraints.txt").read_text()
    flit = index.find("flit_core-3.9-py3-none-any.whl")
    assert flit is not None
    assert _pins_and_hashes(build) == {"flit-core": ("3.9", frozenset({flit.sha256}))}
    assert "# via lib==2.1 (build-system.requires)" in build
    assert "flit-core" not in packages  # never mixed into what gets installed


def test_sdists_whose_build_requirements_conflict_still_lock(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    """One constraints file pins each build dependency once: a source whose build requirements
    exclude another's is left out of it with a warning, and the lock is still written."""
    for name, wants in (("alpha", "scmtool<2"), ("beta", "scmtool>=2")):
        index.wheel(name, "1.0")
        index.sdist(
            name,
            "1.0",
            pyproject=f'[build-system]\nrequires = ["{wants}"]\nbuild-backend = "scm.api"\n',
        )
    index.wheel("scmtool", "1.5")
    index.wheel("scmtool", "2.5")
    r = _lock(server, target_venv, tmp_path, "alpha", "beta")
    assert r.returncode == 0, r.stderr
    assert "beta==1.0 (build-system.requires) (scmtool>=2) conflict" in r.stderr
    build = (tmp_path / "pylock.build-constraints.txt").read_text()
    tool = index.find("scmtool-1.5-py3-none-any.whl")
    assert tool is not None
    assert _pins_and_hashes(build) == {"scmtool": ("1.5", frozenset({tool.sha256}))}
    assert "# via alpha==1.0 (build-system.requires)" in build
    lock = Pylock.from_dict(tomllib.loads((tmp_path / "pylock.toml").read_text()))
    assert {p.name for p in lock.packages} == {"alpha", "beta"}


def test_requirements_format_has_header_via_and_hashes(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _set(index)
    (tmp_path / "requirements.in").write_text("app[fast]\n")
    r = _lock(server, target_venv, tmp_path, "-r", "requirements.in", "-o", "requirements.txt")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "requirements.txt").read_text()
    assert "#    safepip lock " in text and "-o requirements.txt" in text
    assert "# environment: python_version ==" in text
    assert f"--index-url {server.simple_url}" in text
    assert "app[fast]==1.0 \\\n    --hash=sha256:" in text
    assert "    # via -r requirements.in\n" in text
    assert "leaf==0.1 \\" in text and "    # via lib\n" in text
    pins = _pins_and_hashes(text)
    assert set(pins) == {"app", "lib", "leaf", "extra-dep"}
    assert len(pins["lib"][1]) == 4
    r = _lock(server, target_venv, tmp_path, "-r", "requirements.in", "-o", "requirements.txt")
    assert (tmp_path / "requirements.txt").read_text() == text


def test_safepip_installs_its_pylock_asking_no_index(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _set(index)
    assert _lock(server, target_venv, tmp_path, "app").returncode == 0
    server.requests.clear()
    r = run_safepip(
        "--python",
        str(target_venv / "bin/python"),
        "install",
        "-r",
        str(tmp_path / "pylock.toml"),
        "-i",
        "http://127.0.0.1:9/unused/",
    )
    assert r.returncode == 0, r.stderr
    assert {"app-1.0.dist-info", "lib-2.1.dist-info", "leaf-0.1.dist-info"} <= _installed(
        target_venv
    )
    # Files only from the URLs the lock records; pages (for the gates) only from its index.
    assert all(p.startswith(("/simple/", "/files/")) for _, p, _ in server.requests)
    assert not any(p.startswith("/files/flit") for _, p, _ in server.requests)


def test_pip_and_uv_accept_our_pylock(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _set(index)
    assert _lock(server, target_venv, tmp_path, "app[fast]").returncode == 0
    lock = tmp_path / "pylock.toml"
    env = dict(os.environ)
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(target_venv / "bin/python"),
            "install",
            "--no-index",
            "-r",
            str(lock),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr
    assert {"app-1.0.dist-info", "extra_dep-1.0.dist-info"} <= _installed(target_venv)

    uv_target = tmp_path / "uvenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(uv_target)], check=True)
    uv = subprocess.run(
        [
            str(BIN / "uv"),
            "pip",
            "install",
            "--python",
            str(uv_target / "bin/python"),
            "--no-config",
            "--no-cache",
            "-r",
            str(lock),
        ],
        capture_output=True,
        text=True,
        env={**env, "UV_NO_CONFIG": "1"},
        check=False,
    )
    assert uv.returncode == 0, uv.stderr
    assert {"app-1.0.dist-info", "lib-2.1.dist-info"} <= _installed(uv_target)


def test_safepip_installs_a_pylock_written_by_pip_lock(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _set(index)
    out = tmp_path / "pylock.toml"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "lock", "-i", server.simple_url, "-o", str(out), "app"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr
    r = run_safepip("--python", str(target_venv / "bin/python"), "install", "-r", str(out))
    assert r.returncode == 0, r.stderr
    assert {"app-1.0.dist-info", "lib-2.1.dist-info", "leaf-0.1.dist-info"} <= _installed(
        target_venv
    )


def test_same_pins_and_hashes_as_pip_compile(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _set(index)
    (tmp_path / "requirements.in").write_text("app[fast]\n")
    r = _lock(server, target_venv, tmp_path, "-r", "requirements.in", "-o", "ours.txt")
    assert r.returncode == 0, r.stderr
    theirs = subprocess.run(
        [
            str(BIN / "pip-compile"),
            "--generate-hashes",
            "--no-header",
            "--quiet",
            "--index-url",
            server.simple_url,
            "--output-file",
            "theirs.txt",
            "requirements.in",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert theirs.returncode == 0, theirs.stderr
    ours = _pins_and_hashes((tmp_path / "ours.txt").read_text())
    assert ours == _pins_and_hashes((tmp_path / "theirs.txt").read_text())
    assert len(ours["lib"][1]) == 4


def test_one_flipped_byte_refuses_and_installs_nothing(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _set(index)
    assert _lock(server, target_venv, tmp_path, "app").returncode == 0
    leaf = index.find("leaf-0.1-py3-none-any.whl")
    assert leaf is not None
    middle = len(leaf.data) // 2
    server.tampered[leaf.filename] = (
        leaf.data[:middle] + bytes([leaf.data[middle] ^ 1]) + leaf.data[middle + 1 :]
    )
    before = tree_digest(target_venv)
    r = run_safepip(
        "--python",
        str(target_venv / "bin/python"),
        "install",
        "--no-cache-dir",  # the lock run cached the verified file; make the install download it
        "-r",
        str(tmp_path / "pylock.toml"),
    )
    assert r.returncode == 3, r.stderr
    assert "hash-mismatch" in r.stderr and "leaf-0.1" in r.stderr and "Traceback" not in r.stderr
    assert tree_digest(target_venv) == before


@pytest.mark.parametrize("output", ["pylock.toml", "requirements.txt"])
def test_lock_for_another_platform_is_refused_clearly(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path, output: str
) -> None:
    _set(index)
    r = _lock(
        server,
        target_venv,
        tmp_path,
        "--python-version",
        "3.9",
        "--platform",
        "win_amd64",
        "-o",
        output,
        "app",
    )
    assert r.returncode == 0, r.stderr
    text = (tmp_path / output).read_text()
    assert "win-only" in text
    assert 'sys_platform == \\"win32\\"' in text or 'sys_platform == "win32"' in text
    before = tree_digest(target_venv)
    r = run_safepip(
        "--python", str(target_venv / "bin/python"), "install", "-r", str(tmp_path / output)
    )
    assert r.returncode == 3, r.stderr
    assert "lock-environment-mismatch" in r.stderr and "locked for" in r.stderr
    assert "win32" in r.stderr and "Traceback" not in r.stderr
    assert tree_digest(target_venv) == before


def test_upgrade_package_keeps_the_other_pins(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    index.wheel("a", "1.0", requires=["b"])
    index.wheel("b", "1.0")
    assert _lock(server, target_venv, tmp_path, "a", "-o", "req.txt").returncode == 0
    index.wheel("a", "2.0", requires=["b"])
    index.wheel("b", "2.0")
    assert _lock(server, target_venv, tmp_path, "a", "-o", "req.txt").returncode == 0
    pins = _pins_and_hashes((tmp_path / "req.txt").read_text())
    assert (pins["a"][0], pins["b"][0]) == ("1.0", "1.0")  # existing pins are kept
    r = _lock(server, target_venv, tmp_path, "a", "-o", "req.txt", "--upgrade-package", "b")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "req.txt").read_text()
    pins = _pins_and_hashes(text)
    assert (pins["a"][0], pins["b"][0]) == ("1.0", "2.0")
    assert "--upgrade-package" not in text  # the regenerate command keeps no upgrade option
    assert _lock(server, target_venv, tmp_path, "a", "-o", "req.txt", "-U").returncode == 0
    pins = _pins_and_hashes((tmp_path / "req.txt").read_text())
    assert (pins["a"][0], pins["b"][0]) == ("2.0", "2.0")


def test_pyproject_dependencies_and_groups(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    index.wheel("a", "1.0")
    index.wheel("b", "1.0")
    index.wheel("c", "1.0")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0"\ndependencies = ["a"]\n'
        '[project.optional-dependencies]\nx = ["c"]\n'
        '[dependency-groups]\ndev = ["b"]\n'
    )
    r = _lock(server, target_venv, tmp_path, "-o", "req.txt")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "req.txt").read_text()
    assert set(_pins_and_hashes(text)) == {"a"} and "# via proj (pyproject.toml)" in text
    r = _lock(
        server,
        target_venv,
        tmp_path,
        "pyproject.toml",
        "--extra",
        "x",
        "--group",
        "dev",
        "-o",
        "r2.txt",
    )
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "r2.txt").read_text()
    assert set(_pins_and_hashes(text)) == {"a", "b", "c"}
    assert "# via pyproject.toml (group dev)" in text


def test_require_hashes_rules(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    a = index.wheel("a", "1.0", requires=["b"])
    b = index.wheel("b", "1.0")
    py = str(target_venv / "bin/python")
    reqs, cons = tmp_path / "r.txt", tmp_path / "c.txt"
    reqs.write_text(f"a==1.0 --hash=sha256:{a.sha256}\nb>=1\n")
    r = run_safepip("--python", py, "install", "-i", server.simple_url, "-r", str(reqs))
    assert r.returncode == 3 and "hash-unpinned" in r.stderr and "b>=1" in r.stderr
    # A constraint's pin and hashes count for the requirement it constrains, as in pip 26.
    cons.write_text(f"b==1.0 --hash=sha256:{b.sha256}\n")
    r = run_safepip(
        "--python", py, "install", "-i", server.simple_url, "-r", str(reqs), "-c", str(cons)
    )
    assert r.returncode == 0, r.stderr
    assert {"a-1.0.dist-info", "b-1.0.dist-info"} <= _installed(target_venv)
    # A git URL needs a full commit id in hash-checking mode: refused before anything is fetched.
    reqs.write_text("git+https://example.invalid/x.git@0123456789abcdef#egg=x\n")
    r = run_safepip(
        "--python", py, "install", "--require-hashes", "-i", server.simple_url, "-r", str(reqs)
    )
    assert r.returncode == 3 and "hash-unpinned" in r.stderr and "x.git" in r.stderr


def test_environments_merge_under_markers_and_install_selects_this_one(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    import platform

    if platform.machine() != "x86_64" or sys.platform != "linux":
        pytest.skip("the local environment of this test is linux x86_64")
    _set(index)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}:manylinux_2_17_x86_64"
    r = _lock(
        server,
        target_venv,
        tmp_path,
        "--environment",
        "3.9:win_amd64",
        "--environment",
        here,
        "app",
    )
    assert r.returncode == 0, r.stderr
    lock = Pylock.from_dict(tomllib.loads((tmp_path / "pylock.toml").read_text()))
    assert lock.environments is not None and len(lock.environments) == 2
    packages = {p.name: p for p in lock.packages}
    assert packages["app"].marker is None and packages["lib"].marker is None
    win_only = packages["win-only"].marker
    assert win_only is not None and 'sys_platform == "win32"' in str(win_only)
    r = run_safepip(
        "--python", str(target_venv / "bin/python"), "install", "-r", str(tmp_path / "pylock.toml")
    )
    assert r.returncode == 0, r.stderr
    installed = _installed(target_venv)
    assert "app-1.0.dist-info" in installed and not any(d.startswith("win_only") for d in installed)


@pytest.mark.parametrize("archive", ["tar.gz", "zip"])
def test_static_build_requires_read_without_running_code(tmp_path: Path, archive: str) -> None:
    import io
    import tarfile
    import zipfile

    from safepip.buildsystem import DEFAULT_BUILD_REQUIRES, static_build_requires

    members = {
        "p-1.0/pyproject.toml": b'[build-system]\nrequires = ["hatchling>=1", "x; os_name == \'nt\'"]\n',
        "p-1.0/setup.py": b"raise SystemExit('must not run')\n",
    }
    path = tmp_path / f"p-1.0.{archive}"
    if archive == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
    else:
        with tarfile.open(path, "w:gz") as tf:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    assert static_build_requires(path, path.name) == ("hatchling>=1", "x; os_name == 'nt'")
    bare = tmp_path / "q-1.0.tar.gz"
    with tarfile.open(bare, "w:gz") as tf:
        info = tarfile.TarInfo("q-1.0/setup.py")
        info.size = 0
        tf.addfile(info, io.BytesIO(b""))
    assert static_build_requires(bare, bare.name) == DEFAULT_BUILD_REQUIRES


def test_output_name_decides_the_format(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    index.wheel("a", "1.0")
    r = _lock(server, target_venv, tmp_path, "a", "-o", "locked.toml")
    assert r.returncode == 2 and "pylock.NAME.toml" in r.stderr
    r = _lock(server, target_venv, tmp_path, "a", "-o", "pylock.dev.toml")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pylock.dev.toml").read_text().startswith('lock-version = "1.0"')
    r = _lock(server, target_venv, tmp_path, "-r", "pylock.dev.toml", "-o", "pylock.toml")
    assert r.returncode == 2 and "does not take a pylock.toml" in r.stderr
    r = _lock(server, target_venv, tmp_path, "a", "-o", "locked.toml", "--format", "requirements")
    assert r.returncode == 0, r.stderr
    assert "a==1.0 \\\n    --hash=sha256:" in (tmp_path / "locked.toml").read_text()


@pytest.mark.parametrize("how", ["-c", "pip.conf"])
def test_a_pylock_installs_under_constraints_its_pins_meet(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path, how: str
) -> None:
    """A constraint, given or machine-wide (pip.conf ``constraint``), holds the lock's pins to
    it as pip's resolver does; one on a project the lock does not pin changes nothing."""
    _set(index)
    assert _lock(server, target_venv, tmp_path, "app").returncode == 0
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("lib>=2,<3\nunrelated<1\nleaf<0.1; sys_platform == 'win32'\n")
    env = dict(os.environ)
    args: list[str] = []
    if how == "-c":
        args = ["-c", str(constraints)]
    else:
        (tmp_path / "xdg" / "pip").mkdir(parents=True)
        (tmp_path / "xdg" / "pip" / "pip.conf").write_text(
            f"[global]\nconstraint = {constraints}\n"
        )
        env["XDG_CONFIG_DIRS"] = str(tmp_path / "xdg")
        del env["PIP_CONFIG_FILE"]
    python = str(target_venv / "bin/python")
    r = run_safepip(
        "--python", python, "install", "-r", str(tmp_path / "pylock.toml"), *args, env=env
    )
    assert r.returncode == 0, r.stderr
    assert {"app-1.0.dist-info", "lib-2.1.dist-info", "leaf-0.1.dist-info"} <= _installed(
        target_venv
    )


def test_a_pylock_pin_a_constraint_excludes_is_refused_before_anything_is_installed(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _set(index)
    assert _lock(server, target_venv, tmp_path, "app").returncode == 0
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("lib<2\n")
    before = tree_digest(_site(target_venv))
    python = str(target_venv / "bin/python")
    r = run_safepip(
        "--python", python, "install", "-r", str(tmp_path / "pylock.toml"), "-c", str(constraints)
    )
    assert r.returncode == 1, r.stderr
    assert "the lock pins lib 2.1, which the constraint lib<2" in r.stderr
    assert str(constraints) in r.stderr
    assert "hint:" in r.stderr and "Traceback" not in r.stderr
    assert tree_digest(_site(target_venv)) == before
    # Other requirements beside a lock are still refused: the lock is installed alone.
    r = run_safepip("--python", python, "install", "-r", str(tmp_path / "pylock.toml"), "leaf")
    assert r.returncode == 2, r.stderr
    assert "cannot be combined with other requirements" in r.stderr


def test_a_constraint_whose_marker_does_not_hold_constrains_nothing(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    """As pip: ``lib<2; sys_platform == 'win32'`` is no constraint on Linux."""
    _set(index)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("lib<2; sys_platform == 'win32'\n")
    python = str(target_venv / "bin/python")
    r = run_safepip(
        "--python", python, "install", "-i", server.simple_url, "-c", str(constraints), "app"
    )
    assert r.returncode == 0, r.stderr
    assert "lib-2.1.dist-info" in _installed(target_venv)
