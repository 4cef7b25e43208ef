"""Runs that share things: two at once on one cache and one target, and credentials that must
never leave the origin they belong to (a canary grepped across every artefact of a run)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from pathlib import Path

from safepip.index import PageCache
from tests.kit import Index, IndexServer, isolated_environ


def _site(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def _catalogue(index: Index, count: int) -> None:
    names = [f"dep{i:02d}" for i in range(count)]
    for name in names:
        index.wheel(name, "1.0", files={f"{name}/__init__.py": b"# " + b"x" * 20_000 + b"\n"})
    index.wheel("app", "1.0", requires=names)


def _safepip(venv: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "safepip", "--python", str(venv / "bin/python"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_two_runs_at_once_share_a_cache_and_a_target(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    _catalogue(index, 20)
    cache = tmp_path / "cache"
    env = isolated_environ(tmp_path / "home")
    common = ["install", "--cache-dir", str(cache), "-i", server.simple_url, "app"]
    runs = [_safepip(target_venv, env, *common), _safepip(target_venv, env, *common)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in runs]
    for code, _out, err in results:
        assert code == 0, err
        assert "Traceback" not in err
    installed = {p.name for p in _site(target_venv).iterdir()}
    assert {"app", *(f"dep{i:02d}" for i in range(20))} <= installed
    assert not any(p.name.startswith("~") for p in _site(target_venv).iterdir())
    assert not (_site(target_venv) / ".safepip-journal").exists()
    _assert_cache_consistent(cache)


def _assert_cache_consistent(cache: Path) -> None:
    """Every stored file is what its address says; nothing half-written; every page loads."""
    files = [p for p in (cache / "files").rglob("*") if p.is_file()]
    assert files, "nothing was cached"
    for path in files:
        assert not path.name.startswith(".partial-"), path
        sha256 = path.parent.name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256, path
    pages = PageCache(cache / "http")
    entries = [p for p in (cache / "http").rglob("*") if p.is_file()]
    assert entries and not any(p.name.endswith(".tmp") for p in entries)
    for entry in entries:
        assert entry.read_bytes()[:4], entry
    assert pages.load("never-fetched") is None


CANARY_URL = "canary-url-7f3a9"
CANARY_NETRC = "canary-netrc-51c2e"
CANARY_ENV = "canary-env-c0ffee"


def test_credentials_never_appear_in_any_artefact(
    index: Index, target_venv: Path, tmp_path: Path
) -> None:
    """Credentials from the command line (in the URL), from ~/.netrc and from PIP_* variables are
    used, and none of them shows in stdout, stderr, the report, the SBOM, pip's log, the cache or
    the target, for a run that succeeds and for runs that fail."""
    _catalogue(index, 2)
    extra = Index()
    extra.wheel("other", "1.0")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    with IndexServer(index) as main_srv, IndexServer(extra) as netrc_srv:
        netrc_url = netrc_srv.simple_url.replace("127.0.0.1", "localhost")
        (home / ".netrc").write_text(f"machine localhost login bob password {CANARY_NETRC}\n")
        (home / ".netrc").chmod(0o600)
        env = isolated_environ(
            home,
            {"PIP_INDEX_URL": main_srv.simple_url.replace("http://", f"http://al:{CANARY_ENV}@")},
        )
        artefacts = tmp_path / "artefacts"
        artefacts.mkdir()
        cache = tmp_path / "cache"
        outputs: list[str] = []
        for number, args in enumerate(
            [
                ["app", "other"],  # succeeds, with every source used
                ["does-not-exist"],  # fails: resolution
                ["app==9"],  # fails: no such version
            ]
        ):
            proc = _safepip(
                target_venv,
                env,
                "install",
                "-v",
                "--cache-dir",
                str(cache),
                "--report",
                str(artefacts / f"report{number}.json"),
                "--log",
                str(artefacts / f"pip{number}.log"),
                "--sbom",
                str(artefacts / f"sbom{number}.json"),
                "--extra-index-url",
                main_srv.simple_url.replace("http://", f"http://al:{CANARY_URL}@"),
                "--extra-index-url",
                netrc_url,
                *args,
            )
            out, err = proc.communicate(timeout=300)
            outputs.append(out + err)
            if number == 0:
                assert proc.returncode == 0, err
            else:
                assert proc.returncode in (1, 3), err
        # The credentials were really used: each server saw its own, and only its own.
        main_auth = {h.get("Authorization") for _, _, h in main_srv.requests}
        netrc_auth = {h.get("Authorization") for _, _, h in netrc_srv.requests}
        assert any(a and a.startswith("Basic ") for a in main_auth)
        assert any(a and a.startswith("Basic ") for a in netrc_auth)
        assert not main_auth & netrc_auth - {None}
    haystacks = {f"output of run {i}": text for i, text in enumerate(outputs)}
    for root in (artefacts, cache, target_venv, tmp_path / "home" / ".cache"):
        if not root.exists():
            continue
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.name != ".netrc":
                haystacks[str(path)] = path.read_bytes().decode("latin-1")
    assert len(haystacks) > 10
    encoded = [
        base64.b64encode(f"{user}:{secret}".encode()).decode()
        for user, secret in (("al", CANARY_URL), ("bob", CANARY_NETRC), ("al", CANARY_ENV))
    ]
    for canary in (CANARY_URL, CANARY_NETRC, CANARY_ENV, *encoded):
        leaks = [where for where, text in haystacks.items() if canary in text]
        assert not leaks, f"{canary} leaked into {leaks}"
    assert (artefacts / "report0.json").exists() and (artefacts / "sbom0.json").exists()
