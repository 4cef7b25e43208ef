"""One session reads its CA bundle once, for every connection it opens, and still verifies each
server against it."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from safepip.net import NetSettings, make_session
from tests.kit import Index, IndexServer

trustme = pytest.importorskip("trustme")


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture
def bundle_loads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every CA bundle loaded into any TLS context, as it is loaded."""
    loads: list[object] = []
    original = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(args or tuple(kwargs.values()))
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    return loads


@pytest.fixture
def two_servers(index: Index) -> Iterator[tuple[IndexServer, IndexServer, trustme.CA]]:
    ca = trustme.CA()
    index.wheel("a", "1.0")
    with (
        IndexServer(index, ssl_context=_server_context(ca)) as one,
        IndexServer(index, ssl_context=_server_context(ca)) as two,
    ):
        yield one, two, ca


def test_bundle_read_once_for_many_connections(
    two_servers: tuple[IndexServer, IndexServer, trustme.CA],
    tmp_path: Path,
    bundle_loads: list[object],
) -> None:
    one, two, ca = two_servers
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with make_session(NetSettings(cert=str(bundle), retries=0)) as session:
        for server in (one, two, one, two):
            session.close()  # a new connection each time: the pools are emptied
            response = session.get(server.simple_url + "a/", timeout=10)
            assert response.status_code == 200
            assert b"a-1.0" in response.content
    assert bundle_loads == [(str(bundle),)]


def test_shared_bundle_still_refuses_an_unknown_issuer(
    two_servers: tuple[IndexServer, IndexServer, trustme.CA],
    index: Index,
    tmp_path: Path,
) -> None:
    one, _two, ca = two_servers
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    stranger = trustme.CA()
    with (
        make_session(NetSettings(cert=str(bundle), retries=0)) as session,
        IndexServer(index, ssl_context=_server_context(stranger)) as other,
    ):
        assert session.get(one.simple_url + "a/", timeout=10).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            session.get(other.simple_url + "a/", timeout=10)
        # Not even once the shared context has connected elsewhere.
        assert session.get(one.simple_url + "a/", timeout=10).status_code == 200


def test_each_bundle_its_own_context(
    two_servers: tuple[IndexServer, IndexServer, trustme.CA], tmp_path: Path
) -> None:
    """A request given another bundle is verified against that one alone."""
    one, _two, ca = two_servers
    right = tmp_path / "right.pem"
    ca.cert_pem.write_to_path(str(right))
    wrong = tmp_path / "wrong.pem"
    trustme.CA().cert_pem.write_to_path(str(wrong))
    with make_session(NetSettings(cert=str(right), retries=0)) as session:
        assert session.get(one.simple_url + "a/", timeout=10).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            session.get(one.simple_url + "a/", timeout=10, verify=str(wrong))
        assert session.get(one.simple_url + "a/", timeout=10).status_code == 200
