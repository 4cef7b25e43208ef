"""Direct references in locks: a git URL locked to its full commit id, a project directory and
a source archive with its sha256, written to pylock.toml and requirements files, and installed
from them (checked out at the locked commit, hash-checked, built in the sandbox)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.pylock import Pylock

from tests.conftest import run_safepip
from tests.kit import Index, IndexServer, tree_digest
from tests.test_direct import _commit_tagged, _freeze, _project

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Sources:
    """A tagged git repository, a project directory and an sdist on disk, and an index with
    the build backends."""

    server: IndexServer
    repo: Path
    commit: str
    directory: Path
    archive: Path
    work: Path


def _git_head(path: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def sources(tmp_path: Path) -> Iterator[Sources]:
    from tests.buildkit import add_backends, make_project_sdist

    index = Index()
    add_backends(index)
    repo = _project(tmp_path / "git", "git-proj", "1.0", "flit")
    _commit_tagged(repo)
    work = tmp_path / "work"
    directory = _project(work / "src", "dir-proj", "2.0", "flit")
    name, data = make_project_sdist("arch-proj", "3.0", "flit")
    archive = tmp_path / "dist" / name
    archive.parent.mkdir()
    archive.write_bytes(data)
    with IndexServer(index) as server:
        yield Sources(server, repo, _git_head(repo), directory, archive, work)


def _lock(s: Sources, target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_safepip(
        "--python", str(target / "bin/python"), "lock", "-i", s.server.simple_url, *args, cwd=s.work
    )


def _install(target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_safepip("--python", str(target / "bin/python"), "install", *args)


def test_pylock_records_commit_directory_and_archive_and_installs_them(
    sources: Sources, target_venv: Path
) -> None:
    s = sources
    git_req = f"git-proj @ git+{s.repo.as_uri()}@v1"
    arch_req = f"arch-proj @ {s.archive.as_uri()}"
    r = _lock(s, target_venv, git_req, "./src/dir_proj-2.0", arch_req)
    assert r.returncode == 0, r.stderr
    lock_path = s.work / "pylock.toml"
    first = lock_path.read_bytes()
    assert _lock(s, target_venv, git_req, "./src/dir_proj-2.0", arch_req).returncode == 0
    assert lock_path.read_bytes() == first  # deterministic

    lock = Pylock.from_dict(tomllib.loads(first.decode()))
    packages = {p.name: p for p in lock.packages}
    assert set(packages) == {"git-proj", "dir-proj", "arch-proj"}
    vcs = packages["git-proj"].vcs
    assert vcs is not None and packages["git-proj"].version is None
    assert (vcs.type, vcs.url, vcs.commit_id, vcs.requested_revision) == (
        "git",
        s.repo.as_uri(),
        s.commit,
        "v1",
    )
    directory = packages["dir-proj"].directory
    assert directory is not None and directory.path == "src/dir_proj-2.0"
    archive = packages["arch-proj"].archive
    assert archive is not None and archive.url is None
    assert archive.path == os.path.relpath(s.archive, s.work)
    import hashlib

    assert archive.hashes == {"sha256": hashlib.sha256(s.archive.read_bytes()).hexdigest()}
    assert str(packages["arch-proj"].version) == "3.0"
    # Every source tree and archive's static build requirements are pinned with hashes.
    build = (s.work / "pylock.build-constraints.txt").read_text()
    assert "flit-core==" in build and "--hash=sha256:" in build

    # A new commit on the branch does not change what the lock installs.
    (s.repo / "git_proj" / "__init__.py").write_text("__version__ = '9.9'\n")
    subprocess.run(["git", "commit", "-qam", "two"], cwd=s.repo, check=True, env=_git_env())
    subprocess.run(["git", "tag", "-f", "v1"], cwd=s.repo, check=True, capture_output=True)
    r = _install(target_venv, "-r", str(lock_path))
    assert r.returncode == 0, r.stderr
    freeze = _freeze(target_venv)
    assert f"git_proj @ git+{s.repo.as_uri()}@{s.commit}" in freeze
    assert any(line.startswith("dir_proj @ file://") for line in freeze)
    assert any(line.startswith(f"arch_proj @ {s.archive.as_uri()}") for line in freeze)


def _git_env() -> dict[str, str]:
    return dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.test",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.test",
    )


def test_requirements_lock_pins_commit_and_archive_hash(
    sources: Sources, target_venv: Path
) -> None:
    s = sources
    r = _lock(
        s,
        target_venv,
        f"git-proj @ git+{s.repo.as_uri()}@v1",
        f"arch-proj @ {s.archive.as_uri()}",
        "-o",
        "requirements.txt",
    )
    assert r.returncode == 0, r.stderr
    text = (s.work / "requirements.txt").read_text()
    import hashlib

    digest = hashlib.sha256(s.archive.read_bytes()).hexdigest()
    assert f"git-proj @ git+{s.repo.as_uri()}@{s.commit}\n" in text
    assert f"arch-proj @ {s.archive.as_uri()} \\\n    --hash=sha256:{digest}\n" in text
    r = _install(target_venv, "-r", str(s.work / "requirements.txt"))  # hash-checking mode
    assert r.returncode == 0, r.stderr
    freeze = _freeze(target_venv)
    assert f"git_proj @ git+{s.repo.as_uri()}@{s.commit}" in freeze
    # A directory has no hash: a requirements lock refuses it and says where it can go.
    r = _lock(s, target_venv, "./src/dir_proj-2.0", "-o", "dirs.txt")
    assert r.returncode == 2 and "pylock.toml" in r.stderr and "Traceback" not in r.stderr
    assert not (s.work / "dirs.txt").exists()


def test_changed_archive_or_missing_commit_installs_nothing(
    sources: Sources, target_venv: Path
) -> None:
    s = sources
    r = _lock(
        s, target_venv, f"git-proj @ git+{s.repo.as_uri()}@v1", f"arch-proj @ {s.archive.as_uri()}"
    )
    assert r.returncode == 0, r.stderr
    lock_path = s.work / "pylock.toml"
    text = lock_path.read_text()
    before = tree_digest(target_venv)

    original = s.archive.read_bytes()
    from tests.buildkit import make_project_sdist

    s.archive.write_bytes(make_project_sdist("arch-proj", "3.0", "flit", setup_py="#\n")[1])
    r = _install(target_venv, "--no-cache-dir", "-r", str(lock_path))
    assert r.returncode == 3, r.stderr
    assert "hash-mismatch" in r.stderr and "arch_proj-3.0.tar.gz" in r.stderr
    assert "Traceback" not in r.stderr
    assert tree_digest(target_venv) == before
    s.archive.write_bytes(original)

    lock_path.write_text(text.replace(s.commit, "0" * 40))
    r = _install(target_venv, "-r", str(lock_path))
    assert r.returncode != 0 and "0" * 40 in r.stderr and "Traceback" not in r.stderr
    assert tree_digest(target_venv) == before


def _pip_install(s: Sources, target: Path, lock: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(target / "bin/python"),
            "install",
            "-i",
            s.server.simple_url,
            "-r",
            str(lock),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
    )


def _uv_install(target: Path, find_links: Path, lock: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "uv"),
            "pip",
            "install",
            "--python",
            str(target / "bin/python"),
            "--no-config",
            "--no-cache",
            "--no-index",
            "--find-links",
            str(find_links),
            "-r",
            str(lock),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "UV_NO_CONFIG": "1"},
        check=False,
    )


def test_pip_and_uv_install_our_pylock_with_direct_entries(
    sources: Sources, target_venv: Path, tmp_path: Path
) -> None:
    """pip and uv install each kind of entry as pip's own `lock` writes them (pip refuses a
    source tree next to hashed entries, as with its own locks, so each kind is locked alone)."""
    from tests.buildkit import add_backends
    from tests.kit import make_wheel

    s = sources
    backends = Index()
    add_backends(backends)
    find_links = backends.write_find_links(tmp_path / "backends")
    uv_target = tmp_path / "uvenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(uv_target)], check=True)
    name, data = make_wheel("wheel-proj", "4.0")
    (s.work / name).write_bytes(data)
    inputs = {
        "pylock.git.toml": f"git-proj @ git+{s.repo.as_uri()}@v1",
        "pylock.dir.toml": "./src/dir_proj-2.0",
        "pylock.arch.toml": f"wheel-proj @ {(s.work / name).as_uri()}",
    }
    for lock, requirement in inputs.items():
        r = _lock(s, target_venv, requirement, "-o", lock)
        assert r.returncode == 0, r.stderr
        pip = _pip_install(s, target_venv, s.work / lock)
        assert pip.returncode == 0, pip.stderr
        uv = _uv_install(uv_target, find_links, s.work / lock)
        assert uv.returncode == 0, uv.stderr
    freeze = _freeze(target_venv)
    assert f"git_proj @ git+{s.repo.as_uri()}@{s.commit}" in freeze
    assert any(line.startswith("dir_proj @ file://") for line in freeze)
    assert any(line.startswith("wheel-proj @ file://") for line in freeze)
    uv_site = next((uv_target / "lib").glob("python*/site-packages"))
    direct_urls = sorted(p.read_text() for p in uv_site.glob("*.dist-info/direct_url.json"))
    assert len(direct_urls) == 3 and any(s.commit in text for text in direct_urls)


# --- sdist-only entries and build constraints ------------------------------------------------


@pytest.fixture
def sdist_only(tmp_path: Path) -> Iterator[tuple[IndexServer, Index]]:
    """An index with the build backends and a project that has only an sdist."""
    from tests.buildkit import add_backends, make_project_sdist

    index = Index()
    add_backends(index)
    index.add(make_project_sdist("src-only", "1.0", "flit"), project="src-only")
    with IndexServer(index) as server:
        yield server, index


def _flit_core(index: Index) -> tuple[str, str]:
    (wheel,) = index.projects["flit-core"]
    version = wheel.filename.split("-")[1]
    return version, wheel.sha256


def test_sdist_only_entry_builds_with_the_locks_build_constraints(
    sdist_only: tuple[IndexServer, Index], target_venv: Path, tmp_path: Path
) -> None:
    server, index = sdist_only
    work = tmp_path / "w"
    work.mkdir()
    r = run_safepip(
        "--python", str(target_venv / "bin/python"), "lock", "-i", server.simple_url, "src-only",
        cwd=work,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    companion = work / "pylock.build-constraints.txt"
    version, digest = _flit_core(index)
    assert f"flit-core=={version}" in companion.read_text() and digest in companion.read_text()
    pinned = companion.read_text()

    # A build-constraints hash that does not match the backend's file: refused, nothing installed.
    companion.write_text(pinned.replace(digest, "0" * 64))
    before = tree_digest(target_venv)
    r = _install(target_venv, "--no-cache-dir", "-r", str(work / "pylock.toml"))
    assert r.returncode == 3, r.stderr
    assert "hash-mismatch" in r.stderr and "flit_core" in r.stderr
    assert tree_digest(target_venv) == before

    companion.write_text(pinned)
    r = _install(target_venv, "-v", "-r", str(work / "pylock.toml"))
    assert r.returncode == 0, r.stderr
    assert "src_only-1.0.tar.gz" in r.stdout + r.stderr and "sandbox" in r.stdout + r.stderr
    assert "src_only==1.0" in _freeze(target_venv)

    companion.unlink()  # the lock names it: installing without it is an error, not unpinned
    r = _install(target_venv, "--force-reinstall", "-r", str(work / "pylock.toml"))
    assert r.returncode == 2 and "build-constraints" in r.stderr and "missing" in r.stderr


def test_build_constraint_option_pins_and_hash_checks_build_dependencies(
    sdist_only: tuple[IndexServer, Index], target_venv: Path, tmp_path: Path
) -> None:
    server, index = sdist_only
    version, digest = _flit_core(index)
    constraints = tmp_path / "build.txt"
    args = ("-i", server.simple_url, "--build-constraint", str(constraints), "src-only")
    before = tree_digest(target_venv)
    constraints.write_text(f"flit-core=={version} --hash=sha256:{'0' * 64}\n")
    r = _install(target_venv, "--no-cache-dir", *args)
    assert r.returncode == 3 and "hash-mismatch" in r.stderr, r.stderr
    constraints.write_text("flit-core<1\n")  # no version allowed: the build cannot get a backend
    r = _install(target_venv, "--no-cache-dir", *args)
    assert r.returncode != 0 and "flit" in r.stderr.lower(), r.stderr
    assert tree_digest(target_venv) == before
    constraints.write_text(f"flit-core=={version} --hash=sha256:{digest}\n")
    r = _install(target_venv, *args)
    assert r.returncode == 0, r.stderr
    assert "src_only==1.0" in _freeze(target_venv)
