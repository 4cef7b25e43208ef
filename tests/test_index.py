"""Index page parsing: the fast paths give what the general ones give."""

from __future__ import annotations

import urllib.parse

import pytest
from packaging.utils import canonicalize_name

from safepip.errors import InvalidIndexPage
from safepip.index import join_url, parse_json_page

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


@pytest.mark.parametrize("digest", ["g" * 64, "a" * 63 + " ", "0x" + "a" * 62, "A" * 63 + "\n"])
def test_malformed_hashes_are_still_refused(digest: str) -> None:
    body = (
        '{"meta": {"api-version": "1.0"}, "name": "demo", "files": [{"filename": '
        '"demo-1.0.tar.gz", "url": "https://files.example/demo-1.0.tar.gz", '
        f'"hashes": {{"sha256": "{digest.encode("unicode_escape").decode()}"}}}}]}}'
    ).encode()
    with pytest.raises(InvalidIndexPage, match="malformed sha256"):
        parse_json_page(body, BASE, canonicalize_name("demo"), "https://idx.example/simple/")
