"""Credentials (URL userinfo, .netrc, keyring, client certificates) go only to their own origin and
never appear in any output, report or error; HTTPS is verified against pip's `cert` settings."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.conftest import run_safepip
from tests.kit import Index, IndexServer

trustme = pytest.importorskip("trustme")

CANARY = "canary-s3cr3t-7f1d"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _page_pointing_at(
    index: Index, pages: IndexServer, files: IndexServer, name: str
) -> Callable[[BaseHTTPRequestHandler], bool]:
    """A hook serving ``name``'s JSON page whose file URLs point at another server."""

    def hook(handler: BaseHTTPRequestHandler) -> bool:
        body = index.json_page(name, files.url)
        pages._send(handler, 200, body, "application/vnd.pypi.simple.v1+json")
        return True

    return hook


@pytest.fixture
def split_index(index: Index) -> Iterator[tuple[IndexServer, IndexServer]]:
    """Pages on one origin, files on another."""
    index.wheel("a", "1.0", requires=["b"])
    index.wheel("b", "1.0")
    with IndexServer(index) as pages, IndexServer(index) as files:
        for name in ("a", "b"):
            pages.hooks[f"/simple/{name}/"] = _page_pointing_at(index, pages, files, name)
        yield pages, files


def _auth_headers(server: IndexServer) -> list[str | None]:
    return [headers.get("Authorization") for _, _, headers in server.requests]


def _assert_no_leak(canary: str, *texts: str) -> None:
    encoded = base64.b64encode(canary.encode()).decode()
    for text in texts:
        assert canary not in text
        assert encoded not in text


def test_url_credentials_go_to_their_origin_only(
    split_index: tuple[IndexServer, IndexServer], target_venv: Path, tmp_path: Path
) -> None:
    pages, files = split_index
    report = tmp_path / "report.json"
    index_url = pages.simple_url.replace("://", f"://alice:{CANARY}@")
    r = run_safepip(
        "install",
        "-vvv",
        "--python",
        str(target_venv / "bin/python"),
        "--report",
        str(report),
        "-i",
        index_url,
        "a",
    )
    assert r.returncode == 0, r.stderr
    assert set(_auth_headers(pages)) == {_basic("alice", CANARY)}
    assert files.requests and set(_auth_headers(files)) == {None}
    _assert_no_leak(CANARY, r.stdout, r.stderr, report.read_text())
    freeze = subprocess.run(
        [str(target_venv / "bin/python"), "-m", "pip", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "a==1.0" in freeze
    _assert_no_leak(CANARY, freeze)


def test_netrc_credentials_go_to_their_host_only(
    split_index: tuple[IndexServer, IndexServer], isolate: Path, target_venv: Path
) -> None:
    pages, files = split_index
    netrc = isolate / ".netrc"
    netrc.write_text(f"machine localhost login bob password {CANARY}\n")
    netrc.chmod(0o600)
    port = pages.httpd.server_address[1]
    r = run_safepip(
        "install",
        "--dry-run",
        "--python",
        str(target_venv / "bin/python"),
        "-i",
        f"http://localhost:{port}/simple/",
        "a",
    )
    assert r.returncode == 0, r.stderr
    assert set(_auth_headers(pages)) == {_basic("bob", CANARY)}
    assert files.requests and set(_auth_headers(files)) == {None}  # files are on 127.0.0.1
    _assert_no_leak(CANARY, r.stdout, r.stderr)


def test_keyring_command_supplies_the_password(
    split_index: tuple[IndexServer, IndexServer], tmp_path: Path, target_venv: Path
) -> None:
    """``--keyring-provider subprocess`` runs ``keyring get SERVICE USER`` as pip does: first
    for the index URL, then for its host:port."""
    pages, files = split_index
    host_port = pages.url.split("://", 1)[1]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "keyring-calls"
    script = bindir / "keyring"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        f'if [ "$1" = get ] && [ "$2" = "{host_port}" ] && [ "$3" = carol ]; then\n'
        f"  echo {CANARY}; exit 0\nfi\nexit 1\n"
    )
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    r = run_safepip(
        "install",
        "--dry-run",
        "--keyring-provider",
        "subprocess",
        "--python",
        str(target_venv / "bin/python"),
        "-i",
        pages.simple_url.replace("://", "://carol@"),
        "a",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert calls.read_text().splitlines()[:2] == [
        f"get {pages.simple_url} carol",
        f"get {host_port} carol",
    ]
    assert set(_auth_headers(pages)) == {_basic("carol", CANARY)}
    assert set(_auth_headers(files)) == {None}
    _assert_no_leak(CANARY, r.stdout, r.stderr)
    # --keyring-provider disabled: the keyring is never asked.
    calls.unlink()
    r = run_safepip(
        "install",
        "--dry-run",
        "--keyring-provider",
        "disabled",
        "--python",
        str(target_venv / "bin/python"),
        "-i",
        pages.simple_url.replace("://", "://carol@"),
        "a",
        env=env,
    )
    assert not calls.exists()


def test_credentials_never_appear_in_errors(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    index.wheel("a", "1.0")
    py = str(target_venv / "bin/python")
    unreachable = f"http://dave:{CANARY}@127.0.0.1:9/simple/"
    r = run_safepip(
        "install", "--python", py, "--retries", "0", "--timeout", "2", "-i", unreachable, "a"
    )
    assert r.returncode == 1 and "index-unreachable" in r.stderr, r.stderr
    _assert_no_leak(CANARY, r.stdout, r.stderr)

    def unauthorized(handler: BaseHTTPRequestHandler) -> bool:
        server._send(handler, 401, b"who are you", "text/plain")
        return True

    server.hooks["/simple/a/"] = unauthorized
    with_creds = server.simple_url.replace("://", f"://dave:{CANARY}@")
    r = run_safepip("install", "--python", py, "-vv", "-i", with_creds, "a")
    assert r.returncode == 1, r.stderr
    assert "401" in r.stderr and "Traceback" not in r.stderr
    _assert_no_leak(CANARY, r.stdout, r.stderr)

    del server.hooks["/simple/a/"]
    f = index.find("a-1.0-py3-none-any.whl")
    assert f is not None
    server.tampered[f.filename] = f.data[:-1] + bytes([f.data[-1] ^ 1])
    r = run_safepip("install", "--python", py, "-i", with_creds, "a")
    assert r.returncode == 3 and "hash-mismatch" in r.stderr, r.stderr
    _assert_no_leak(CANARY, r.stdout, r.stderr)


# HTTPS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def _server_context(ca: trustme.CA, require_client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    if require_client_cert:
        ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@pytest.mark.parametrize("how", ["PIP_CERT", "REQUESTS_CA_BUNDLE", "--cert", "pip.conf"])
def test_https_index_verified_with_the_configured_ca(
    how: str, index: Index, ca: trustme.CA, ca_file: Path, target_venv: Path, tmp_path: Path
) -> None:
    index.wheel("a", "1.0")
    with IndexServer(index, ssl_context=_server_context(ca)) as tls:
        assert tls.simple_url.startswith("https://")
        args = ["install", "--dry-run", "--python", str(target_venv / "bin/python")]
        args += ["--retries", "0", "-i", tls.simple_url, "a"]
        r = run_safepip(*args)
        assert r.returncode == 1, r.stderr
        assert "TLS verification failed" in r.stderr and "cert" in r.stderr
        env = dict(os.environ)
        if how == "--cert":
            args += ["--cert", str(ca_file)]
        elif how == "pip.conf":
            conf = tmp_path / "pip.conf"
            conf.write_text(f"[global]\ncert = {ca_file}\n")
            env["PIP_CONFIG_FILE"] = str(conf)
        else:
            env[how] = str(ca_file)
        r = run_safepip(*args, env=env)
        assert r.returncode == 0, r.stderr
        assert "Would install a-1.0" in r.stdout


def test_client_certificate(
    index: Index, ca: trustme.CA, ca_file: Path, target_venv: Path, tmp_path: Path
) -> None:
    index.wheel("a", "1.0")
    client = ca.issue_cert("safepip-test-client")
    client_pem = tmp_path / "client.pem"
    client_pem.write_bytes(
        b"".join(b.bytes() for b in client.cert_chain_pems) + client.private_key_pem.bytes()
    )
    ctx = _server_context(ca, require_client_cert=True)
    with IndexServer(index, ssl_context=ctx) as tls:
        args = ["install", "--dry-run", "--python", str(target_venv / "bin/python")]
        args += ["--retries", "0", "--cert", str(ca_file), "-i", tls.simple_url, "a"]
        r = run_safepip(*args)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr
        r = run_safepip(*args, "--client-cert", str(client_pem))
        assert r.returncode == 0, r.stderr
        assert "Would install a-1.0" in r.stdout
