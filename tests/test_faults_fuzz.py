"""Fuzzing the parsers that read untrusted bytes: each returns a value or raises a SafepipError,
never anything else. Budgets are modest so the suite stays fast; raise them locally with
``--hypothesis-profile=deep``."""

from __future__ import annotations

import json
import optparse
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.utils import canonicalize_name

from safepip.errors import SafepipError
from safepip.index import parse_html_page, parse_json_page
from safepip.policyfile import load_policy
from safepip.reqs import read_requirements
from safepip.resolve import parse_metadata
from tests.kit import make_wheel

settings.register_profile(
    "fast",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("deep", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("SAFEPIP_HYPOTHESIS_PROFILE", "fast"))

NAME = canonicalize_name("demo")
PAGE = "https://index.invalid/simple/demo/"

# JSON values shaped like PEP 691 pages: the right keys with the wrong or odd values.
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(["demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz", "sha256", "../x", "#"]),
)
_json = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(
                ["files", "filename", "url", "hashes", "yanked", "size", "requires-python",
                 "core-metadata", "dist-info-metadata", "upload-time", "meta", "tracks",
                 "project-status", "status", "reason", "alternate-locations", "sha256", "md5"]
            ) | st.text(max_size=8),
            children,
            max_size=6,
        ),
    ),
    max_leaves=25,
)  # fmt: skip


def _accepts_or_refuses(call: object) -> None:
    assert callable(call)
    try:
        call()
    except SafepipError as exc:
        assert exc.message and "\n" not in exc.message.strip()


@given(_json)
def test_json_page_parser_on_page_shaped_values(value: object) -> None:
    body = json.dumps(value).encode()
    _accepts_or_refuses(lambda: parse_json_page(body, PAGE, NAME, PAGE))


@given(st.binary(max_size=2000))
def test_json_page_parser_on_bytes(body: bytes) -> None:
    _accepts_or_refuses(lambda: parse_json_page(body, PAGE, NAME, PAGE))


_html_pieces = st.lists(
    st.sampled_from(
        ['<a href="', '">', "</a>", "<base href=", '<meta name="pypi:tracks" content="',
         "demo-1.0-py3-none-any.whl", "#sha256=", "#md5=", "a" * 64, "&amp;", "&#", "<!--",
         "<", ">", '"', "'", " data-yanked", " data-core-metadata=", " data-requires-python=",
         "&gt;=3", "\x00", "\ud800", "../", "//other.invalid/", "javascript:", "%2e%2e/"]
    )
    | st.text(max_size=10),
    max_size=40,
)  # fmt: skip


@given(_html_pieces, st.booleans())
def test_html_page_parser(pieces: list[str], find_links: bool) -> None:
    body = "".join(pieces).encode("utf-8", "surrogatepass")
    _accepts_or_refuses(lambda: parse_html_page(body, PAGE, None if find_links else NAME, PAGE))


@given(st.binary(max_size=2000))
def test_html_page_parser_on_bytes(body: bytes) -> None:
    _accepts_or_refuses(lambda: parse_html_page(body, PAGE, NAME, PAGE))


def test_deeply_nested_pages_are_refused_or_parsed() -> None:
    for body in (b"[" * 200_000, b'{"files": ' * 100_000, b"<div>" * 200_000):
        _accepts_or_refuses(lambda b=body: parse_json_page(b, PAGE, NAME, PAGE))
        _accepts_or_refuses(lambda b=body: parse_html_page(b, PAGE, NAME, PAGE))


_req_lines = st.lists(
    st.sampled_from(
        ["demo", "demo==1.0", "demo[x]>=1; python_version > '3'", "-r other.txt", "-c c.txt",
         "--hash=sha256:" + "a" * 64, "--hash=md4:00", "-e .", "--index-url x", "-f ./links",
         "\\", "#", "--pre", "demo @ https://x.invalid/demo.whl", "./local", "--no-binary",
         "-Z", "--option-that-does-not-exist", "demo==", "[", "]", ";", "\t", "\x00", "é",
         "--trusted-host", "-i", "--extra-index-url=https://u:p@x.invalid/"]
    )
    | st.text(max_size=20),
    max_size=8,
)  # fmt: skip


def _pip_options(requirement_file: str) -> optparse.Values:
    from pip._internal.commands import create_command

    command = create_command("install")
    options, _ = command.parse_args(["-r", requirement_file])
    return options


@given(_req_lines)
def test_requirement_file_parser(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "requirements.txt")
        path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        Path(tmp, "other.txt").write_text("demo\n")
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            _accepts_or_refuses(lambda: read_requirements(_pip_options(str(path)), []))
        finally:
            os.chdir(cwd)


@given(st.binary(max_size=600))
def test_requirement_file_parser_on_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "requirements.txt")
        path.write_bytes(data)
        _accepts_or_refuses(lambda: read_requirements(_pip_options(str(path)), []))


_toml_pieces = st.lists(
    st.sampled_from(
        ["[tool]", "[tool.safepip]", "[indexes.x]", "[sandbox]", "tool = 5", "safepip = 'x'",
         "x = 1", "y = [1, 'a']", "z = {a = 1}", "[[a]]", "\n", "=", "'", '"""', "\x00", "\xff",
         "url = 'https://u:p@x.invalid/'", "[tool.safepip.sandbox]", "deny = true"]
    )
    | st.text(max_size=12),
    max_size=12,
)  # fmt: skip


@given(_toml_pieces, st.sampled_from(["policy.toml", "pyproject.toml", "safepip.toml"]))
def test_policy_loader(pieces: list[str], name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, name)
        path.write_bytes("\n".join(pieces).encode("utf-8", "surrogatepass"))
        empty_home = {"HOME": tmp, "XDG_CONFIG_HOME": tmp}

        def load() -> None:
            if name == "policy.toml":
                policy = load_policy(empty_home, str(path), cwd=Path(tmp, "nowhere"))
            else:
                policy = load_policy(empty_home, None, cwd=Path(tmp))
            for section in ("indexes", "sandbox", "tool"):
                policy.section(section)
                policy.project_section(section)

        _accepts_or_refuses(load)


@given(st.binary(max_size=400))
def test_policy_loader_on_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "pyproject.toml").write_bytes(data)
        _accepts_or_refuses(lambda: load_policy({"HOME": tmp}, None, cwd=Path(tmp)))


_VALID_WHEEL = make_wheel("demo", "1.0")[1]


@given(
    st.lists(st.tuples(st.integers(0, len(_VALID_WHEEL) - 1), st.integers(0, 255)), max_size=8),
    st.integers(0, len(_VALID_WHEEL)),
)
def test_wheel_reader_on_mutated_wheels(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_VALID_WHEEL)
    for where, value in flips:
        data[where] = value
    blob = bytes(data[: max(cut, 1)]) if cut < len(data) // 2 else bytes(data)

    _accepts_or_refuses(lambda: _read_wheel_file(blob))


def _read_wheel_file(blob: bytes) -> None:
    """The wheel reader as the pipeline uses it: a stored file, then its metadata parsed."""
    from safepip.fetch import FileStore, MetadataFetcher

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "demo-1.0-py3-none-any.whl")
        path.write_bytes(blob)
        fetcher = MetadataFetcher(None, FileStore(Path(tmp, "store")))  # type: ignore[arg-type]
        parse_metadata(fetcher._from_zip_path(path, path.name), "demo")


@given(st.binary(max_size=3000) | st.just(_VALID_WHEEL[:-7]) | st.just(b"PK\x05\x06" + b"\0" * 18))
def test_wheel_file_reader_on_bytes(blob: bytes) -> None:
    _accepts_or_refuses(lambda: _read_wheel_file(blob))


@given(st.binary(max_size=1500) | st.text(max_size=500).map(lambda t: t.encode("utf-8", "replace")))
def test_core_metadata_parser(raw: bytes) -> None:
    _accepts_or_refuses(lambda: parse_metadata(b"Name: demo\nVersion: 1\n" + raw, "demo"))
    _accepts_or_refuses(lambda: parse_metadata(raw, "demo"))


@pytest.mark.parametrize("size", [17 * 1024 * 1024])
def test_huge_metadata_is_refused(size: int) -> None:
    with pytest.raises(SafepipError):
        parse_metadata(b"Name: demo\nVersion: 1\nSummary: " + b"x" * size + b"\n", "demo")
