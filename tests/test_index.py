"""Index page parsing: the fast paths give what the general ones give."""

from __future__ import annotations

import urllib.parse

import pytest
from packaging.utils import canonicalize_name

from safepip.errors import InvalidIndexPage
from safepip.index import join_url, parse_json_page
from safepip.models import Hashes

BASE = "https://idx.example/simple/demo/"


@pytest.mark.parametrize(
    "url",
    [
        "https://files.example/packages/ab/cd/demo-1.0-py3-none-any.whl",
        "https://files.example/packages/demo-1.0.tar.gz#sha256=" + "a" * 64,
        "http://files.example:8080/demo-1.0.tar.gz",
        "https://user:pw@files.example/demo-1.0.tar.gz",
        "https://files.example/a/../demo-1.0.tar.gz",
        "https://files.example/demo-1.0.tar.gz?",
        "https://files.example/demo-1.0.tar.gz#",
        "https://files.example/demo-1.0.tar.gz?x=1#f",
        "https://files.example/demo;params/demo-1.0.tar.gz",
        "https://files.example/demo-1.0.tar.gz\n",
        "https://files.ex\tample/demo-1.0.tar.gz",
        "https://[::1]/demo-1.0.tar.gz",
        "HTTPS://files.example/demo-1.0.tar.gz",
        " https://files.example/demo-1.0.tar.gz",
        "../../packages/demo-1.0.tar.gz",
        "/packages/demo-1.0.tar.gz",
        "//files.example/demo-1.0.tar.gz",
        "demo-1.0.tar.gz",
        "file:///tmp/demo-1.0.tar.gz",
        "ftp://files.example/demo-1.0.tar.gz",
    ],
)
def test_join_url_is_urljoin(url: str) -> None:
    assert join_url(BASE, url) == urllib.parse.urljoin(BASE, url)
    assert join_url("http://idx.example/simple/demo/", url) == urllib.parse.urljoin(
        "http://idx.example/simple/demo/", url
    )


@pytest.mark.parametrize(
    "digest",
    ["g" * 64, "a" * 63 + " ", "0x" + "a" * 62, "A" * 63 + "\n", "a" * 64 + "\n", "a" * 65],
)
def test_malformed_hashes_are_still_refused(digest: str) -> None:
    body = (
        '{"meta": {"api-version": "1.0"}, "name": "demo", "files": [{"filename": '
        '"demo-1.0.tar.gz", "url": "https://files.example/demo-1.0.tar.gz", '
        f'"hashes": {{"sha256": "{digest.encode("unicode_escape").decode()}"}}}}]}}'
    ).encode()
    with pytest.raises(InvalidIndexPage, match="malformed sha256"):
        parse_json_page(body, BASE, canonicalize_name("demo"), "https://idx.example/simple/")


@pytest.mark.parametrize(
    "raw",
    [
        {"sha256": "ab" * 32},
        {"sha256": "AB" * 32},
        {"SHA256": "ab" * 32},
        {"sha256": "ab" * 32, "md5": "CD" * 16},
        {"blake2b": "ab" * 64},
        {},
    ],
)
def test_page_hashes_are_those_of_the_mapping(raw: dict[str, str]) -> None:
    """A file's digests, by the common path (one lower-case sha256) or the general one: known
    algorithms only, lower-cased, as ``Hashes.from_mapping`` keeps them."""
    from safepip.index import _clean_hashes

    known = {a: d for a, d in raw.items() if a.lower() in ("sha256", "md5")}
    assert _clean_hashes(raw, "page", "demo-1.0.tar.gz") == Hashes.from_mapping(known)


def test_pages_an_index_does_not_have_leave_its_connection_for_the_next_one() -> None:
    """An index's 404 for a project it does not list (an extra index asked about every
    project) is read to its end, so one connection serves the next question: no new name
    lookup and TLS handshake per project."""
    from http.server import BaseHTTPRequestHandler

    from safepip.index import IndexClient
    from safepip.models import IndexSource
    from safepip.net import NetSettings, make_session
    from tests.kit import Index, IndexServer

    names = [f"absent-{i}" for i in range(10)]
    clients: list[tuple[str, int]] = []
    with IndexServer(Index()) as server:

        def not_here(handler: BaseHTTPRequestHandler) -> bool:
            clients.append(handler.client_address)
            return False  # the server's own 404 then answers

        for name in names:
            server.hooks[f"/simple/{name}/"] = not_here
        client = IndexClient(make_session(NetSettings()), (IndexSource(url=server.simple_url),))
        try:
            for name in names:  # one at a time, as a resolver asks about a chain of projects
                (page,) = client.pages_from(canonicalize_name(name), client.sources)
                assert not isinstance(page, Exception) and page.files == ()
        finally:
            client.close()
    assert len(clients) == len(names)
    assert len(set(clients)) == 1, f"{len(set(clients))} connections for {len(names)} pages"
