"""End to end: safepip install from real local indexes into real virtual environments."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import run_safepip
from tests.kit import Index, IndexServer, tree_digest


def _site(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def _freeze(venv: Path) -> list[str]:
    out = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "freeze", "--all"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(out.stdout.splitlines())


def _inspect(venv: Path) -> list[tuple[str, str, bool]]:
    out = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "inspect"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    return sorted(
        (i["metadata"]["name"], i["metadata"]["version"], bool(i.get("requested")))
        for i in data["installed"]
    )


def _web_like(index: Index) -> None:
    index.wheel(
        "app",
        "1.0",
        requires=["lib>=1", "extra-dep; extra == 'fast'", "win-only; sys_platform == 'win32'"],
        extras=["fast"],
    )
    index.wheel("app", "2.0", requires=["lib>=2"])
    index.wheel("lib", "1.5")
    index.wheel("lib", "2.1", requires=["leaf"])
    index.wheel("lib", "3.0a1")
    index.wheel("leaf", "0.1")
    index.wheel("leaf", "0.2", yanked="broken")
    index.wheel("extra-dep", "1.0")
    index.wheel("win-only", "1.0")


@pytest.mark.parametrize("pep658", [False, True])
def test_install_matches_plain_pip(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path, pep658: bool
) -> None:
    _web_like(index)
    index.pep658 = pep658
    result = run_safepip(
        "--python",
        str(target_venv / "bin/python"),
        "install",
        "-i",
        server.simple_url,
        "app[fast]<2",
    )
    assert result.returncode == 0, result.stderr
    ours_freeze, ours_inspect = _freeze(target_venv), _inspect(target_venv)
    our_downloads = server.downloads("app-1.0-py3-none-any.whl")

    plain = tmp_path / "plain"
    subprocess.run(
        [str(target_venv / "bin/python"), "-m", "venv", "--without-pip", str(plain)], check=True
    )
    subprocess.run(
        ["cp", "-a", *[str(p) for p in _site(target_venv).glob("pip*")], str(_site(plain))],
        check=True,
    )
    subprocess.run(
        [
            str(plain / "bin/python"),
            "-m",
            "pip",
            "install",
            "-q",
            "-i",
            server.simple_url,
            "app[fast]<2",
        ],
        check=True,
        env=dict(os.environ),
    )
    assert ours_freeze == _freeze(plain)
    assert ours_inspect == _inspect(plain)
    assert "app==1.0" in ours_freeze and "lib==2.1" in ours_freeze and "leaf==0.1" in ours_freeze
    assert "extra-dep==1.0" in ours_freeze and not any(
        line.startswith("win-only") for line in ours_freeze
    )
    assert ("app", "1.0", True) in ours_inspect and ("lib", "2.1", False) in ours_inspect
    if pep658:
        assert our_downloads == 1  # metadata came from PEP 658, then one download to install


def test_metadata_by_range_requests_not_whole_downloads(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    _web_like(index)
    result = run_safepip(
        "--python",
        str(target_venv / "bin/python"),
        "install",
        "--dry-run",
        "-i",
        server.simple_url,
        "app<2",
    )
    assert result.returncode == 0, result.stderr
    assert "Would install" in result.stdout
    # Like pip's, a dry run resolves from metadata (range reads here) and downloads no file.
    assert server.downloads("app-1.0-py3-none-any.whl") == 0
    assert any(
        "Range" in h for _, p, h in server.requests if p.endswith("app-1.0-py3-none-any.whl")
    )


def test_dry_run_with_verify_files_downloads_and_checks_every_file(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _web_like(index)
    py = str(target_venv / "bin/python")
    report = tmp_path / "report.json"
    args = ["--python", py, "install", "--dry-run", "-i", server.simple_url, "app<2"]
    plain = run_safepip(*args, "--report", str(report))
    assert plain.returncode == 0, plain.stderr
    (note,) = [
        f for f in json.loads(report.read_text())["safepip"]["findings"] if f["gate"] == "dry-run"
    ]
    assert (
        note["rule"] == "files-not-checked"
        and "app-1.0-py3-none-any.whl" in note["details"]["files"]
    )
    assert server.downloads("app-1.0-py3-none-any.whl") == 0
    verified = run_safepip(*args, "--verify-files", "--report", str(report))
    assert verified.returncode == 0, verified.stderr
    assert server.downloads("app-1.0-py3-none-any.whl") == 1
    assert not [
        f for f in json.loads(report.read_text())["safepip"]["findings"] if f["gate"] == "dry-run"
    ]
    # A tampered file is refused by a verifying dry run, and passes a metadata-only one unseen.
    f = index.find("leaf-0.1-py3-none-any.whl")
    assert f is not None
    server.tampered[f.filename] = f.data[:-1] + bytes([f.data[-1] ^ 1])
    refused = run_safepip(*args, "--verify-files", "--cache-dir", str(tmp_path / "c"))
    assert refused.returncode == 3 and "hash-mismatch" in refused.stderr, refused.stderr


def test_tampered_file_is_refused_and_target_unchanged(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    _web_like(index)
    f = index.find("leaf-0.1-py3-none-any.whl")
    assert f is not None
    server.tampered[f.filename] = f.data[:-1] + bytes([f.data[-1] ^ 1])
    before = tree_digest(target_venv)
    result = run_safepip(
        "--python", str(target_venv / "bin/python"), "install", "-i", server.simple_url, "app<2"
    )
    assert result.returncode == 3, result.stderr
    assert "hash-mismatch" in result.stderr and "leaf-0.1" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree_digest(target_venv) == before


def test_dry_run_report_is_pip_format(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _web_like(index)
    report = tmp_path / "report.json"
    result = run_safepip(
        "--python",
        str(target_venv / "bin/python"),
        "install",
        "--dry-run",
        "--report",
        str(report),
        "-i",
        server.simple_url,
        "app[fast]<2",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["version"] == "1"
    names = {i["metadata"]["name"]: i for i in data["install"]}
    assert set(names) == {"app", "lib", "leaf", "extra-dep"}
    assert names["app"]["requested"] is True and names["app"]["requested_extras"] == ["fast"]
    assert names["lib"]["requested"] is False
    leaf = index.find("leaf-0.1-py3-none-any.whl")
    assert leaf is not None
    assert names["leaf"]["download_info"]["archive_info"]["hashes"]["sha256"] == leaf.sha256
    assert data["environment"]["python_version"]
    assert not (_site(target_venv) / "app").exists()


def test_yanked_only_with_exact_pin(index: Index, server: IndexServer, target_venv: Path) -> None:
    _web_like(index)
    py = str(target_venv / "bin/python")
    r = run_safepip("--python", py, "install", "--dry-run", "-i", server.simple_url, "leaf")
    assert "leaf-0.1" in r.stdout
    r = run_safepip("--python", py, "install", "--dry-run", "-i", server.simple_url, "leaf==0.2")
    assert r.returncode == 0, r.stderr
    assert "leaf-0.2" in r.stdout


def test_sdist_is_refused_without_a_working_sandbox(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    marker = target_venv.parent / "built"
    index.sdist("srconly", "1.0", setup_py=f"open({str(marker)!r}, 'w').write('ran')\n")
    env = dict(os.environ, SAFEPIP_SANDBOX_BACKEND="sandbox-exec")  # never works on Linux
    r = run_safepip(
        "--python",
        str(target_venv / "bin/python"),
        "install",
        "-i",
        server.simple_url,
        "srconly",
        env=env,
    )
    assert r.returncode == 3, r.stderr
    assert "no-sandbox" in r.stderr and "Traceback" not in r.stderr
    assert "install bubblewrap" in r.stderr and "--unsafe-unsandboxed-build" in r.stderr
    assert not marker.exists()


def test_conflict_is_explained(index: Index, server: IndexServer, target_venv: Path) -> None:
    index.wheel("a", "1.0", requires=["c<2"])
    index.wheel("b", "1.0", requires=["c>=2"])
    index.wheel("c", "1.0")
    index.wheel("c", "2.0")
    r = run_safepip(
        "--python", str(target_venv / "bin/python"), "install", "-i", server.simple_url, "a", "b"
    )
    assert r.returncode == 1
    assert "conflict" in r.stderr and "c<2" in r.stderr and "c>=2" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_project(index: Index, server: IndexServer, target_venv: Path) -> None:
    index.wheel("a", "1.0")
    r = run_safepip(
        "--python", str(target_venv / "bin/python"), "install", "-i", server.simple_url, "nothere"
    )
    assert r.returncode == 1
    assert "no-matching-distribution" in r.stderr


def test_require_hashes_from_requirement_file(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    good = index.wheel("a", "1.0", requires=["b"])
    dep = index.wheel("b", "1.0")
    reqs = tmp_path / "r.txt"
    reqs.write_text(f"a==1.0 --hash=sha256:{good.sha256}\n")
    py = str(target_venv / "bin/python")
    r = run_safepip("--python", py, "install", "-i", server.simple_url, "-r", str(reqs))
    assert r.returncode == 3 and "hash-missing" in r.stderr and "b==1.0" in r.stderr
    reqs.write_text(
        f"a==1.0 --hash=sha256:{good.sha256}\nb==1.0 \\\n    --hash=sha256:{dep.sha256}\n"
    )
    r = run_safepip("--python", py, "install", "-i", server.simple_url, "-r", str(reqs))
    assert r.returncode == 0, r.stderr
    assert "a==1.0" in _freeze(target_venv)
    reqs.write_text(f"a==1.0 --hash=sha256:{'0' * 64}\n")
    r = run_safepip(
        "--python", py, "install", "--force-reinstall", "-i", server.simple_url, "-r", str(reqs)
    )
    assert r.returncode == 3


def _externally_managed_python(root: Path) -> Path:
    """A copy of the base interpreter in its own prefix whose stdlib carries EXTERNALLY-MANAGED."""
    real_stdlib = Path(sysconfig.get_paths()["stdlib"])
    exe = Path(sysconfig.get_config_var("BINDIR")) / f"python{sysconfig.get_python_version()}"
    stdlib = root / "lib" / real_stdlib.name
    stdlib.mkdir(parents=True)
    for entry in real_stdlib.iterdir():
        if entry.name != "site-packages":
            (stdlib / entry.name).symlink_to(entry)
    (stdlib / "site-packages").mkdir()
    (stdlib / "EXTERNALLY-MANAGED").write_text(
        "[externally-managed]\nError=use the system package manager\n"
    )
    (root / "bin").mkdir()
    shutil.copy2(exe, root / "bin" / "python3")
    return root / "bin" / "python3"


def test_externally_managed_target_is_refused_before_download(
    index: Index, server: IndexServer, tmp_path: Path
) -> None:
    index.wheel("a", "1.0")
    python = _externally_managed_python(tmp_path / "sysroot")
    r = run_safepip("--python", str(python), "install", "-i", server.simple_url, "a")
    assert r.returncode == 3, r.stderr
    assert "externally-managed" in r.stderr and "system package manager" in r.stderr
    assert not server.requests
    # pip's own exceptions: --dry-run --report, and --break-system-packages
    r = run_safepip(
        "--python",
        str(python),
        "install",
        "--dry-run",
        "--report",
        "-",
        "-i",
        server.simple_url,
        "a",
    )
    assert r.returncode == 0, r.stderr


def test_download_command(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _web_like(index)
    out = tmp_path / "wheels"
    r = run_safepip(
        "--python",
        str(target_venv / "bin/python"),
        "download",
        "-d",
        str(out),
        "-i",
        server.simple_url,
        "app<2",
    )
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "app-1.0-py3-none-any.whl",
        "leaf-0.1-py3-none-any.whl",
        "lib-2.1-py3-none-any.whl",
    ]


def test_passthrough_commands(index: Index, server: IndexServer, target_venv: Path) -> None:
    index.wheel("a", "1.0")
    py = str(target_venv / "bin/python")
    assert run_safepip("--python", py, "install", "-i", server.simple_url, "a").returncode == 0
    r = run_safepip("list", "--python", py, "--format=freeze")
    assert r.returncode == 0 and "a==1.0" in r.stdout
    r = run_safepip("--python", py, "uninstall", "-y", "a")
    assert r.returncode == 0, r.stderr
    assert "a==1.0" not in _freeze(target_venv)
    r = run_safepip("--python", py, "show", "nothing-installed-by-this-name")
    assert r.returncode == 1


def test_usage_errors(target_venv: Path) -> None:
    r = run_safepip("install", "--no-such-option", "x")
    assert r.returncode == 2
    assert "--no-such-option" in r.stderr
    r = run_safepip("--python", str(target_venv / "bin/python"), "install", "-e", "/no/such/dir")
    assert r.returncode == 2 and "/no/such/dir" in r.stderr and "Traceback" not in r.stderr


def test_json_and_html_indexes_agree(index: Index, target_venv: Path) -> None:
    _web_like(index)
    outs = []
    for fmt in ("json", "html"):
        with IndexServer(index, format=fmt) as srv:
            r = run_safepip(
                "--python",
                str(target_venv / "bin/python"),
                "install",
                "--dry-run",
                "-i",
                srv.simple_url,
                "app[fast]<2",
            )
            assert r.returncode == 0, r.stderr
            outs.append(r.stdout.strip().splitlines()[-1])
    assert outs[0] == outs[1]


def test_find_links_directory(index: Index, target_venv: Path, tmp_path: Path) -> None:
    _web_like(index)
    links = index.write_find_links(tmp_path / "fl")
    r = run_safepip(
        "--python",
        str(target_venv / "bin/python"),
        "install",
        "--no-index",
        "-f",
        str(links),
        "app<2",
    )
    assert r.returncode == 0, r.stderr
    assert "app==1.0" in _freeze(target_venv)
