"""Index precedence end to end: a private index (pypiserver), a "public" index and vendor indexes on
127.0.0.1, in every arrangement people run; the attacker's version is never installed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_safepip
from tests.kit import Index, IndexFile, IndexServer, tree_digest

pytestmark = pytest.mark.integration

EVIL = "acme_billing-99.0-py3-none-any.whl"


class PrivateIndex:
    """pypiserver on 127.0.0.1 over a directory of files (it rescans the directory per request)."""

    def __init__(self, directory: Path, hash_algo: str = "sha256") -> None:
        self.directory = directory
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pypiserver",
                "run",
                "-p",
                str(self.port),
                "-i",
                "127.0.0.1",
                "-a",
                ".",
                "-P",
                ".",
                "--disable-fallback",  # never redirect an unknown name anywhere
                "--hash-algo",
                hash_algo,
                "--backend",
                "simple-dir",
                "--log-stream",
                "none",
                str(directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError("pypiserver did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def simple_url(self) -> str:
        return self.url + "/simple/"

    def add(self, *files: IndexFile | tuple[str, bytes]) -> None:
        for f in files:
            name, data = (f.filename, f.data) if isinstance(f, IndexFile) else f
            (self.directory / name).write_bytes(data)

    def clear(self) -> None:
        for p in self.directory.iterdir():
            p.unlink()

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def _pypiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateIndex]:
    server = PrivateIndex(tmp_path_factory.mktemp("corp"))
    yield server
    server.close()


@pytest.fixture
def corp(_pypiserver: PrivateIndex) -> PrivateIndex:
    _pypiserver.clear()
    return _pypiserver


@pytest.fixture
def public() -> Iterator[IndexServer]:
    """Plays the public index: the policy declares it a mirror of it."""
    index = Index()
    index.wheel("acme-billing", "99.0", files={"acme_billing/__init__.py": b"PWNED = True\n"})
    index.wheel("publib", "1.0")
    index.wheel("publib", "2.0")
    index.wheel("app", "1.0", requires=["acme-billing", "publib"])
    with IndexServer(index) as srv:
        yield srv


def _corp_projects(corp: PrivateIndex) -> None:
    corp.add(
        _wheel("acme-billing", "1.0"),
        _wheel("corp-app", "1.0", requires=["acme-billing", "publib"]),
    )


def _wheel(name: str, version: str, **kwargs: object) -> tuple[str, bytes]:
    from tests.kit import make_wheel

    return make_wheel(name, version, **kwargs)  # type: ignore[arg-type]


def _policy(
    tmp_path: Path, public: IndexServer, corp: PrivateIndex | None, extra: str = ""
) -> Path:
    text = f'[indexes.public]\nurl = "{public.simple_url}"\nmirror = true\n'
    if corp is not None:
        text += f'\n[indexes.corp]\nurl = "{corp.simple_url}"\ninternal = true\n'
    path = tmp_path / "policy.toml"
    path.write_text(text + extra)
    return path


def _install(
    target: Path, policy: Path, *args: str, cwd: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    report = cwd / "report.json"
    result = run_safepip(
        "--python",
        str(target / "bin/python"),
        "install",
        "--policy",
        str(policy),
        "--report",
        str(report),
        "-v",
        *args,
        cwd=cwd,
    )
    data = json.loads(report.read_text()) if report.exists() else {}
    return result, data


def _installed(target: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(target / "bin/python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    return {p["name"]: p["version"] for p in json.loads(out.stdout)}


def _never_served(server: IndexServer, filename: str) -> bool:
    return not any(path.endswith("/" + filename) for _, path, _ in server.requests)


def _planned(report: dict[str, object]) -> dict[str, str]:
    """What the report says is (or, with --dry-run, would be) installed."""
    return {
        i["metadata"]["name"]: i["metadata"]["version"]
        for i in report["install"]  # type: ignore[attr-defined]
    }


@pytest.fixture(scope="module")
def bare_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty environment for --dry-run runs (they never change it)."""
    path = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path


def _ordered(ordering: str, public: IndexServer, corp: PrivateIndex) -> tuple[str, str]:
    if ordering == "private-index-url":
        return ("-i", corp.simple_url, "--extra-index-url", public.simple_url)
    return ("-i", public.simple_url, "--extra-index-url", corp.simple_url)


def _owned_by_corp(report: dict[str, object], stdout: str) -> None:
    decision = report["safepip"]["decisions"]["acme-billing"]  # type: ignore[index]
    assert decision["indexes"] == ["corp"] and decision["rule"] == "specific-owner"
    assert {"index": "public", "role": "public", "versions": ["99.0"]} in decision["offers"]
    assert "acme-billing: from corp [specific-owner]" in stdout


@pytest.mark.parametrize("ordering", ["private-index-url", "public-index-url"])
def test_private_name_is_installed_from_the_private_index_in_either_ordering(
    public: IndexServer, corp: PrivateIndex, target_venv: Path, tmp_path: Path, ordering: str
) -> None:
    _corp_projects(corp)
    policy = _policy(tmp_path, public, corp)
    args = _ordered(ordering, public, corp)
    result, report = _install(target_venv, policy, *args, "acme-billing", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _installed(target_venv)["acme-billing"] == "1.0"
    assert _never_served(public, EVIL)
    _owned_by_corp(report, result.stdout)


@pytest.mark.parametrize(
    ("ordering", "requirement"), [("private-index-url", "corp-app"), ("public-index-url", "app")]
)
def test_private_name_pulled_in_transitively_comes_from_the_private_index(
    public: IndexServer,
    corp: PrivateIndex,
    bare_target: Path,
    tmp_path: Path,
    ordering: str,
    requirement: str,
) -> None:
    _corp_projects(corp)
    policy = _policy(tmp_path, public, corp)
    args = _ordered(ordering, public, corp)
    result, report = _install(bare_target, policy, "--dry-run", *args, requirement, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _planned(report) == {requirement: "1.0", "acme-billing": "1.0", "publib": "2.0"}
    assert _never_served(public, EVIL)
    _owned_by_corp(report, result.stdout)
    assert report["safepip"]["decisions"]["publib"]["indexes"] == ["public"]  # type: ignore[index]


def test_vendor_index_shaped_like_a_cpu_wheel_index(
    public: IndexServer, bare_target: Path, tmp_path: Path
) -> None:
    """Local-version builds beside byte-identical copies of public wheels of the same version:
    torch-like comes from the vendor; numpy-like copies merge with the public versions."""
    mac = public.index.wheel("torchish", "2.1.0", tag="py3-none-macosx_11_0_arm64")
    public.index.wheel("torchish", "2.1.0", requires=["numpyish"], tag="py3-none-manylinux1_x86_64")
    public.index.wheel("torchish", "2.2.0", requires=["numpyish"])
    np126 = public.index.wheel("numpyish", "1.26.0")
    public.index.wheel("numpyish", "2.0.0")
    vendor_index = Index()
    vendor_index.wheel("torchish", "2.1.0+cpu", requires=["numpyish"])
    vendor_index.add((mac.filename, mac.data), project="torchish")
    vendor_index.add((np126.filename, np126.data), project="numpyish")
    with IndexServer(vendor_index) as vendor:
        policy = _policy(
            tmp_path, public, None, f'\n[indexes.pytorch]\nurl = "{vendor.simple_url}"\n'
        )
        result, report = _install(
            bare_target,
            policy,
            "--dry-run",
            "-i",
            public.simple_url,
            "--extra-index-url",
            vendor.simple_url,
            "torchish",
            cwd=tmp_path,
        )
    assert result.returncode == 0, result.stderr
    assert _planned(report) == {"torchish": "2.1.0+cpu", "numpyish": "2.0.0"}
    decisions = report["safepip"]["decisions"]  # type: ignore[index]
    assert decisions["torchish"]["indexes"] == ["pytorch"]
    assert decisions["numpyish"]["rule"] == "mirror-merged"


def test_full_mirror_beside_the_public_index_is_fine(
    public: IndexServer, corp: PrivateIndex, bare_target: Path, tmp_path: Path
) -> None:
    _corp_projects(corp)
    with IndexServer(public.index) as mirror:  # every file byte-identical, attacker's included
        policy = _policy(tmp_path, public, corp)
        result, report = _install(
            bare_target,
            policy,
            "--dry-run",
            "-i",
            mirror.simple_url,
            "--extra-index-url",
            public.simple_url,
            "--extra-index-url",
            corp.simple_url,
            "app",
            cwd=tmp_path,
        )
        assert _never_served(mirror, EVIL)
    assert result.returncode == 0, result.stderr
    assert _planned(report) == {"app": "1.0", "acme-billing": "1.0", "publib": "2.0"}
    assert _never_served(public, EVIL)
    decisions = report["safepip"]["decisions"]  # type: ignore[index]
    assert decisions["publib"]["rule"] == "mirror-merged"


def test_pinned_project_is_never_looked_up_elsewhere(
    public: IndexServer, corp: PrivateIndex, bare_target: Path, tmp_path: Path
) -> None:
    _corp_projects(corp)
    policy = _policy(tmp_path, public, corp, '\n[index-pins]\n"acme-*" = "corp"\n')
    # corp is not on the command line: the policy adds it
    args = ("--dry-run", "-i", public.simple_url, "app")
    result, report = _install(bare_target, policy, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _planned(report)["acme-billing"] == "1.0"
    assert not any("acme-billing" in path for _, path, _ in public.requests)
    decision = report["safepip"]["decisions"]["acme-billing"]  # type: ignore[index]
    assert decision["rule"] == "pinned" and '"acme-*" = "corp"' in decision["reason"]


def test_project_policy_trying_to_loosen_is_ignored_with_a_warning(
    public: IndexServer, corp: PrivateIndex, bare_target: Path, tmp_path: Path
) -> None:
    _corp_projects(corp)
    project = tmp_path / "cloned"
    project.mkdir()
    (project / "safepip.toml").write_text(
        '[indexes.evil]\nurl = "https://evil.invalid/simple/"\n\n'
        '[index-pins]\nacme-billing = "public"\n\n'
        '[index-policy]\nallow = ["acme-billing"]\nstrict = false\n'
    )
    policy = _policy(tmp_path, public, corp)
    result, report = _install(
        bare_target,
        policy,
        "--dry-run",
        "-i",
        public.simple_url,
        "--extra-index-url",
        corp.simple_url,
        "acme-billing",
        cwd=project,
    )
    assert result.returncode == 0, result.stderr
    assert _planned(report) == {"acme-billing": "1.0"}
    assert _never_served(public, EVIL)
    warnings = [
        line for line in result.stderr.splitlines() if line.startswith("WARNING: project policy")
    ]
    assert len(warnings) == 4, result.stderr
    assert all("ignored" in w and "cloned/safepip.toml" in w for w in warnings)


def test_unreachable_specific_index_fails_closed_unless_told_to_go_on(
    public: IndexServer, bare_target: Path, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/simple/"
    policy = _policy(tmp_path, public, None, f'\n[indexes.corp]\nurl = "{dead}"\n')
    args = ("--dry-run", "-i", public.simple_url, "--retries", "0", "--timeout", "5", "publib")
    result, _ = _install(bare_target, policy, *args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert (
        "index-unreachable" in result.stderr and "the index corp cannot be reached" in result.stderr
    )
    assert "--proceed-without-index corp" in result.stderr
    result, report = _install(
        bare_target, policy, "--proceed-without-index", "corp", *args, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "going on without the index corp" in result.stderr
    assert _planned(report) == {"publib": "2.0"}


def test_pep708_tracks_lets_a_private_index_merge_with_the_public_project(
    public: IndexServer, bare_target: Path, tmp_path: Path
) -> None:
    private = Index()
    private.wheel("publib", "2.0.post1+corp")
    private.tracks["publib"] = [public.simple_url + "publib/"]
    with IndexServer(private) as srv:
        policy = _policy(tmp_path, public, None, f'\n[indexes.corp]\nurl = "{srv.simple_url}"\n')
        result, report = _install(
            bare_target,
            policy,
            "--dry-run",
            "-i",
            public.simple_url,
            "--extra-index-url",
            srv.simple_url,
            "--dry-run",
            "publib<2.0.post1",
            cwd=tmp_path,
        )
    assert result.returncode == 0, result.stderr
    decision = report["safepip"]["decisions"]["publib"]  # type: ignore[index]
    assert decision["rule"] == "pep708-tracks"
    assert decision["indexes"] == ["public", "corp"]
    assert _planned(report) == {"publib": "2.0"}


def test_virtual_repository_mixing_internal_and_proxied_public_is_refused(
    public: IndexServer, corp: PrivateIndex, target_venv: Path, tmp_path: Path
) -> None:
    evil = public.index.find(EVIL)
    assert evil is not None
    corp.add(_wheel("acme-billing", "1.0"), evil)  # the proxied public file, byte for byte
    policy = _policy(tmp_path, public, corp)
    before = tree_digest(target_venv)
    args = ("-i", corp.simple_url, "--extra-index-url", public.simple_url, "acme-billing")
    result, _ = _install(target_venv, policy, *args, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "dependency-confusion" in result.stderr and "Traceback" not in result.stderr
    assert "corp (specific) offers 1.0, 99.0" in result.stderr
    assert "public (public) offers 99.0" in result.stderr
    pin = '"acme-billing" = { index = "corp", versions = "==1.0" }'
    assert pin in result.stderr
    assert tree_digest(target_venv) == before
    # The printed pin settles it, and only the internal build is installed.
    policy.write_text(policy.read_text() + "\n[index-pins]\n" + pin + "\n")
    result, report = _install(target_venv, policy, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _installed(target_venv)["acme-billing"] == "1.0"
    assert report["safepip"]["decisions"]["acme-billing"]["rule"] == "pinned"  # type: ignore[index]


def test_virtual_repository_is_refused_even_when_it_lists_only_md5(
    public: IndexServer, bare_target: Path, tmp_path: Path
) -> None:
    """pypiserver's default hash is md5: the proxied copy is recognised by its public filename."""
    evil = public.index.find(EVIL)
    assert evil is not None
    md5_dir = tmp_path / "md5"
    md5_dir.mkdir()
    corp = PrivateIndex(md5_dir, hash_algo="md5")
    try:
        corp.add(_wheel("acme-billing", "1.0"), evil)
        policy = _policy(tmp_path, public, corp)
        args = ("--dry-run", "-i", public.simple_url, "--extra-index-url", corp.simple_url)
        result, _ = _install(bare_target, policy, *args, "acme-billing", cwd=tmp_path)
    finally:
        corp.close()
    assert result.returncode == 3, result.stderr
    assert "rule: confusion-signature" in result.stderr
    assert '"acme-billing" = { index = "corp", versions = "==1.0" }' in result.stderr
