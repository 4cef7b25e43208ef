"""The resolver's fast paths decide what the general ones decide."""

from __future__ import annotations

import pytest
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, sys_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from safepip.models import FileLink
from safepip.resolve import Provider, RefuseBuilds, ResolveOptions

TAGS = (Tag("cp311", "cp311", "manylinux_2_17_x86_64"), Tag("py3", "none", "any"))


class _NoLinks:
    def links_for(self, name: object) -> list[FileLink]:
        return []

    def prefetch(self, names: object) -> None:
        pass


class _NoMetadata:
    def metadata(self, link: FileLink) -> bytes:
        raise AssertionError("not asked")


def _provider(tags: tuple[Tag, ...]) -> Provider:
    options = ResolveOptions(tags=tags, markers={}, python_version=Version("3.11"), installed={})
    return Provider(_NoLinks(), _NoMetadata(), RefuseBuilds(), options, {}, frozenset())


@pytest.mark.parametrize(
    "filename",
    [
        "demo-1.0-py3-none-any.whl",
        "demo-1.0-1-py3-none-any.whl",
        "demo-1.0-PY3-NONE-ANY.whl",
        "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "demo-1.0-cp310.cp311-abi3-manylinux_2_17_x86_64.whl",
        "demo-1.0-cp311-cp311-win_amd64.whl",
        "demo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl",
        "demo-1.0-py2.py3-none-any.whl",
        "demo-1.0-none-any.whl",
        "demo-1.0-x-y-py3-none-any.whl",
        "de-mo-1.0-py3-none-any.whl",
        "demo-1.0-py3-none-any-extra.whl",
    ],
)
def test_a_wheel_fits_exactly_when_one_of_its_parsed_tags_is_supported(filename: str) -> None:
    provider = _provider(TAGS)
    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        # A name parse_wheel_filename refuses may pass the tag test: it is refused after it.
        return
    assert provider._may_fit(filename) == any(t in TAGS for t in tags)
    assert provider._may_fit(filename) == any(t in TAGS for t in tags)  # once worked out
    assert provider._may_fit(filename.replace("1.0", "2.0")) == any(t in TAGS for t in tags)


def test_the_fast_tag_test_agrees_with_this_interpreters_tags() -> None:
    tags = tuple(sys_tags())
    provider = _provider(tags)
    for tag in tags[:200]:
        assert provider._may_fit(f"demo-1.0-{tag.interpreter}-{tag.abi}-{tag.platform}.whl")
    assert not provider._may_fit("demo-1.0-cp27-cp27mu-manylinux1_i686.whl")


@pytest.mark.parametrize(
    "filename",
    [
        "demo-1.0-py3-none-any.whl",
        "demo-1.0-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "demo-1.0-x1-py3-none-any.whl",
        "demo-1.0.post1.dev2-py2.py3-none-any.whl",
        "demo-not.a.version-py3-none-any.whl",
        "de__mo-1.0-py3-none-any.whl",
        "de-mo-1.0-py3-none-any.whl",
        "demo-py3-none-any.whl",
        "demo-1.0-1-2-py3-none-any.whl",
    ],
)
def test_the_version_policy_records_is_the_parsed_one(filename: str) -> None:
    from safepip.policy import _version_of

    try:
        expected: Version | None = parse_wheel_filename(filename)[1]
    except (InvalidWheelFilename, InvalidVersion):
        expected = None
    link = FileLink(filename=filename, url=f"https://files.example/{filename}", index_url="x")
    assert _version_of(link) == expected


@pytest.mark.parametrize(
    "filename",
    [
        "demo-1.0-py3-none-any.whl",
        "demo-1.0-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "demo-1.0-x1-py3-none-any.whl",
        "Demo_Pkg-1.0.post1.dev2-py2.py3-none-any.whl",
        "demo-not.a.version-py3-none-any.whl",
        "de__mo-1.0-py3-none-any.whl",
        "de-mo-1.0-py3-none-any.whl",
        "demo-py3-none-any.whl",
        "demo-1.0-1-2-py3-none-any.whl",
        "demo-1.0-py3.-none-any.whl",
        "demo-1.0-3py-none-any.whl",
        "demo-1.0-py3--any.whl",
        "demo-1.0-py3-none-.whl",
        "demo-1.0-PY3-NONE-ANY.whl",
        "demo-1.0-py3-none-any.WHL",
        "-1.0-py3-none-any.whl",
        "demo-1.0-py3-none-any.zip",
    ],
)
def test_wheel_names_parsed_in_parts_as_in_one(filename: str) -> None:
    """The resolver parses a wheel's name and version once per release and its tags once per
    tag text: the same answers, and an error exactly where ``parse_wheel_filename`` raises."""
    from safepip.resolve import wheel_name_version_tags

    try:
        name, version, _build, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        with pytest.raises(InvalidWheelFilename):
            wheel_name_version_tags(filename)
        return
    assert wheel_name_version_tags(filename) == (name, version, tags)
    assert wheel_name_version_tags(filename) == (name, version, tags)  # and from the caches


@pytest.mark.parametrize(
    "spec",
    ["==1.31", "==1.31.0", "==1.31.0,>=1.40", ">=1.0,==1.31.0", "==1.31.0+local", "==2.0a1",
     "==2.0a1,!=2.0a1", "==1.*", "===1.31.0", "==9.9", ">=1.31", "==1.31.0.0"],
)  # fmt: skip
def test_candidates_of_a_pinned_project_are_those_of_the_full_search(spec: str) -> None:
    provider = _provider(TAGS)
    names = ["1.30", "1.31.0", "1.31.0+local", "1.32.0", "2.0a1", "0.9"]
    versions = {Version(v): [] for v in names}
    provider._by_version[canonicalize_name("demo")] = versions  # type: ignore[assignment]
    specifiers = [SpecifierSet(part) for part in spec.split(",")]
    combined = SpecifierSet(spec)
    pool = provider._pinned_pool(canonicalize_name("demo"), specifiers)
    for prereleases in (None, True, False):
        full = sorted(combined.filter(versions, prereleases=prereleases))
        fast = sorted(combined.filter(versions if pool is None else pool, prereleases=prereleases))
        assert fast == full


@pytest.mark.parametrize(
    "raw",
    [
        b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: a>=1\n"
        b"Requires-Dist: b; extra == 'x'\n\nLong description\nName: not-this\n\nmore\n",
        b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nSummary: a\n  continued\n\n",
        b"Metadata-Version: 2.1\r\nName: demo\r\nVersion: 1.0\r\nRequires-Dist: a\r\n\r\nbody\r\n",
        b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: a\n",
        b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n \nRequires-Dist: a\n\nbody",
    ],
)
def test_metadata_headers_read_without_the_body_are_the_same(raw: bytes) -> None:
    import email.parser

    from safepip.resolve import _header_block, parse_metadata

    def headers(data: bytes) -> list[tuple[str, str]]:
        return list(email.parser.BytesParser().parsebytes(data, headersonly=True).items())

    assert headers(_header_block(raw)) == headers(raw)
    assert parse_metadata(raw, "test").raw == raw


@pytest.mark.parametrize(
    "filename",
    [
        "boto3-1.28.0.tar.gz",
        "boto3-1.28.0.zip",
        "SQLAlchemy-2.0.1.tar.gz",
        "zope.interface-6.0.tar.gz",
        "my_pkg-1.0.post1.tar.gz",
        "my-pkg-1.0.tar.gz",
        "my-2-1.0.tar.gz",
        "demo-1.0+local.tar.gz",
        "demo-1!2.0.tar.gz",
        "demo-1.0rc1.zip",
        "demo-not.a.version.tar.gz",
        "demo.tar.gz",
        "-1.0.tar.gz",
        "demo-1.0.tgz",
        "demo-1.0.tar.bz2",
        "foo bar-1.0.tar.gz",
        "demo-1.0.TAR.GZ",
        "Demo_Pkg-01.00.tar.gz",
    ],
)
def test_sdist_names_parsed_with_the_release_as_on_their_own(filename: str) -> None:
    """An sdist shares its release's name-and-version parse with the wheels where it can: the
    same answer, and an error exactly where ``parse_sdist_filename`` raises."""
    from packaging.utils import InvalidSdistFilename, parse_sdist_filename

    from safepip.resolve import sdist_name_version

    try:
        expected = parse_sdist_filename(filename)
    except InvalidSdistFilename:
        with pytest.raises(InvalidSdistFilename):
            sdist_name_version(filename)
        return
    assert sdist_name_version(filename) == expected
    assert sdist_name_version(filename) == expected  # and from the cache
