"""Plain-HTTP indexes, however they are configured, follow one rule: refused (exit 3) unless the
user's own policy allows the host; never silently dropped.

The index is reached as http://insecure.test through an HTTP proxy on 127.0.0.1 (the test
server), so the host is not a loopback address, which pip and safepip treat as secure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_safepip
from tests.kit import Index, IndexServer

HOST = "insecure.test"
URL = f"http://{HOST}/simple/"


@pytest.fixture
def proxied(index: Index, server: IndexServer, target_venv: Path) -> list[str]:
    index.wheel("a", "1.0")
    return ["--python", str(target_venv / "bin/python"), "--proxy", server.url]


def _index_hits(server: IndexServer) -> list[str]:
    return [path for _, path, _ in server.requests if HOST in path]


def _assert_refused(r: object, server: IndexServer, mention: str) -> None:
    import subprocess

    assert isinstance(r, subprocess.CompletedProcess)
    assert r.returncode == 3, r.stderr
    assert "insecure-index" in r.stderr and mention in r.stderr
    assert "https" in r.stderr.lower() and "cert" in r.stderr
    assert "Traceback" not in r.stderr
    assert not server.requests  # nothing was asked of any index


def test_plain_http_index_is_refused(proxied: list[str], server: IndexServer) -> None:
    r = run_safepip("install", *proxied, "--dry-run", "-i", URL, "a")
    _assert_refused(r, server, "plain HTTP")


def test_plain_http_extra_index_is_refused_not_dropped(
    proxied: list[str], server: IndexServer
) -> None:
    r = run_safepip(
        "install", *proxied, "--dry-run", "-i", server.simple_url, "--extra-index-url", URL, "a"
    )
    _assert_refused(r, server, "plain HTTP")


@pytest.mark.parametrize("how", ["option", "environment", "config", "requirements-file"])
def test_trusted_host_does_not_allow_it(
    how: str, proxied: list[str], server: IndexServer, tmp_path: Path
) -> None:
    env = dict(os.environ)
    args = ["install", *proxied, "--dry-run"]
    if how == "option":
        args += ["--trusted-host", HOST, "-i", URL, "a"]
    elif how == "environment":
        env.update(PIP_TRUSTED_HOST=HOST, PIP_INDEX_URL=URL)
        args += ["a"]
    elif how == "config":
        conf = tmp_path / "pip.conf"
        conf.write_text(f"[global]\nindex-url = {URL}\ntrusted-host = {HOST}\n")
        env["PIP_CONFIG_FILE"] = str(conf)
        args += ["a"]
    else:
        reqs = tmp_path / "r.txt"
        reqs.write_text(f"--index-url {URL}\n--trusted-host {HOST}\na\n")
        args += ["-r", str(reqs)]
    r = run_safepip(*args, env=env)
    _assert_refused(r, server, "trusted-host")


def test_users_policy_allows_the_host(
    proxied: list[str], server: IndexServer, isolate: Path
) -> None:
    policy = isolate / ".config" / "safepip" / "policy.toml"
    policy.parent.mkdir(parents=True)
    policy.write_text(f'allow-insecure-hosts = ["{HOST}"]\n')
    r = run_safepip("install", *proxied, "--dry-run", "-i", URL, "a")
    assert r.returncode == 0, r.stderr
    assert "Would install a-1.0" in r.stdout
    assert _index_hits(server) == [f"http://{HOST}/simple/a/"]


def test_explicit_policy_file_allows_the_host(
    proxied: list[str], server: IndexServer, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(f'allow-insecure-hosts = ["{HOST}"]\n')
    r = run_safepip("install", *proxied, "--policy", str(policy), "--dry-run", "-i", URL, "a")
    assert r.returncode == 0, r.stderr
    assert _index_hits(server)


def test_project_policy_may_not_allow_it(
    proxied: list[str], server: IndexServer, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "safepip.toml").write_text(f'allow-insecure-hosts = ["{HOST}"]\n')
    r = run_safepip("install", *proxied, "--dry-run", "-i", URL, "a", cwd=project)
    assert r.returncode == 2, r.stderr
    assert "project policy may not set allow-insecure-hosts" in r.stderr
    assert not server.requests


def test_malformed_allow_list_is_a_config_error(proxied: list[str], tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(f'allow-insecure-hosts = "{HOST}"\n')
    r = run_safepip("install", *proxied, "--policy", str(policy), "--dry-run", "-i", URL, "a")
    assert r.returncode == 2 and "must be a list" in r.stderr
