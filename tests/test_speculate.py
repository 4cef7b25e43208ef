"""Metadata fetched ahead of the resolver: what the speculation asks for, and that backtracking
fetches each candidate's metadata once, ahead of the resolver, in the order it tries them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from safepip.models import FileLink
from safepip.resolve import Provider, RefuseBuilds, ResolveOptions, SpecRequirement
from safepip.speculate import Speculator, parse_requirement
from tests.conftest import run_safepip
from tests.kit import Index, IndexServer, metadata_text


class _Source:
    """Metadata served from a table, the way MetadataFetcher serves it: each URL once."""

    def __init__(self, requires: dict[str, list[str]]) -> None:
        self.requires = requires
        self.fetched: list[str] = []
        self.lock = threading.Lock()

    def prefetch(self, link: FileLink, then: Callable[[bytes], None] | None = None) -> None:
        with self.lock:
            if link.url in self.fetched:
                return
            self.fetched.append(link.url)
        name, version = link.filename.split("-")[:2]
        raw = metadata_text(name, version, requires=self.requires.get(link.filename, [])).encode()
        if then is not None:
            then(raw)

    def cancel_prefetches(self) -> None:
        pass


def _link(filename: str) -> FileLink:
    return FileLink(filename=filename, url=f"http://127.0.0.1/{filename}", index_url="http://x/")


def _wait_for(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, "the speculation did not finish"
        time.sleep(0.01)


def test_each_new_range_of_a_project_is_looked_at_again() -> None:
    versions = {"2.0": "lib-2.0-py3-none-any.whl", "1.5": "lib-1.5-py3-none-any.whl"}
    source = _Source({"app-1.0-py3-none-any.whl": ["lib<2"]})
    asked: list[tuple[str, str]] = []
    pages: list[NormalizedName] = []

    def likely(name: NormalizedName, spec: SpecifierSet) -> FileLink | None:
        asked.append((name, str(spec)))
        if name == "app":
            return _link("app-1.0-py3-none-any.whl")
        best = max(spec.filter(versions), key=lambda v: tuple(map(int, v.split("."))))
        return _link(versions[best])

    def prefetch_pages(names: Iterable[NormalizedName]) -> None:
        pages.extend(names)

    spec = Speculator(
        source,
        likely,
        lambda raw: [str(r) for r in _requires(raw)],
        {"python_version": "3.11", "sys_platform": "linux"},
        pages=prefetch_pages,
    )
    try:
        lib = canonicalize_name("lib")
        spec.walk(lib, SpecifierSet(""))  # a user's "lib": the newest
        spec.walk(canonicalize_name("app"), SpecifierSet(""))  # app wants lib<2
        spec.walk(lib, SpecifierSet(""))  # the same range again: nothing new
        _wait_for(lambda: len(source.fetched) == 3)
    finally:
        spec.close()
    assert sorted(asked) == [("app", ""), ("lib", ""), ("lib", "<2")]
    assert sorted(source.fetched) == sorted(
        f"http://127.0.0.1/{f}"
        for f in (
            "app-1.0-py3-none-any.whl",
            "lib-2.0-py3-none-any.whl",
            "lib-1.5-py3-none-any.whl",
        )
    )
    # Each project's page is asked for as soon as the project is named, before its turn.
    assert set(pages) == {"lib", "app"}


def _requires(raw: bytes) -> list[str]:
    return [
        line.split(":", 1)[1].strip()
        for line in raw.decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]


def test_requirements_are_parsed_once() -> None:
    assert parse_requirement("a>=1; python_version > '3'") is parse_requirement(
        "a>=1; python_version > '3'"
    )


def test_backtracking_fetches_each_candidate_metadata_once(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    """``top`` has 40 releases; only the oldest accepts ``base==1.0``: the resolver walks them
    all, and every one's metadata is fetched once (PEP 658), none as a whole file."""
    index.pep658 = True
    index.wheel("base", "1.0")
    index.wheel("base", "2.0")
    index.wheel("top", "0.1", requires=["base==1.0"])
    for minor in range(1, 40):
        index.wheel("top", f"1.{minor}", requires=["base>=2"])
    r = run_safepip(
        "--python",
        str(target_venv / "bin/python"),
        "install",
        "--dry-run",
        "-i",
        server.simple_url,
        "base==1.0",
        "top",
    )
    assert r.returncode == 0, r.stderr
    assert "Would install base-1.0 top-0.1" in r.stdout
    metadata = [p for _, p, _ in server.requests if p.endswith(".whl.metadata")]
    tops = [p for p in metadata if "/top-" in p]
    assert len(tops) == 40 and len(set(tops)) == 40
    assert not [p for _, p, _ in server.requests if p.endswith(".whl")]


class _Links:
    def __init__(self, links: list[FileLink]) -> None:
        self.links = links

    def links_for(self, name: object) -> list[FileLink]:
        return self.links

    def prefetch(self, names: object) -> None:
        pass


class _Ahead:
    """Records what the resolver hands to the speculation to fetch ahead."""

    def __init__(self) -> None:
        self.handed: list[str] = []

    def ahead(self, links: list[FileLink]) -> None:
        self.handed.extend(link.filename for link in links)


def test_backtracking_look_ahead_is_bounded() -> None:
    """A project of 300 releases the resolver walks down 100 of: the look-ahead hands over each
    candidate once, in order, never more than 48 past the one the resolver is at (it used to
    reach twice as far as the resolver had come: every release of a large project)."""
    links = [_link(f"top-1.{minor}-py3-none-any.whl") for minor in range(300)]
    options = ResolveOptions(
        tags=(Tag("py3", "none", "any"),),
        markers={},
        python_version=Version("3.11"),
        installed={},
    )
    provider = Provider(_Links(links), _NoMetadata(), RefuseBuilds(), options, {}, frozenset())
    recorder = _Ahead()
    provider.speculator = recorder  # type: ignore[assignment]
    top = canonicalize_name("top")
    requirement = SpecRequirement(top, frozenset(), SpecifierSet(), None, "top")
    matches = list(provider.find_matches("top", {"top": iter([requirement])}, {"top": iter([])}))
    assert [str(c.version) for c in matches[:2]] == ["1.299", "1.298"]
    for at, candidate in enumerate(matches[:101]):
        provider._look_ahead(candidate)
        assert len(recorder.handed) <= at + 48
    # Once each, in the order the resolver tries them, from the one after the second (the
    # resolver asks for the first two itself).
    expected = [c.link.filename for c in matches[2 : len(recorder.handed) + 2] if c.link]
    assert recorder.handed == expected
    assert 100 + 8 <= len(recorder.handed) <= 100 + 48


class _NoMetadata:
    def metadata(self, link: FileLink) -> bytes:
        raise AssertionError("not asked")


def test_speculation_keeps_to_the_users_own_range(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    """The user pins ``lib==1.0``; ``app`` asks for ``lib>=1``: the version the resolver would
    pick for that range alone (3.0) can never be chosen, and its metadata is not fetched."""
    index.pep658 = True
    for version in ("1.0", "2.0", "3.0"):
        index.wheel("lib", version)
    index.wheel("app", "1.0", requires=["lib>=1"])
    r = run_safepip(
        "--python",
        str(target_venv / "bin/python"),
        "install",
        "--dry-run",
        "-i",
        server.simple_url,
        "lib==1.0",
        "app",
    )
    assert r.returncode == 0, r.stderr
    assert "Would install app-1.0 lib-1.0" in r.stdout
    metadata = [p for _, p, _ in server.requests if p.endswith(".whl.metadata")]
    assert any("/lib-1.0-" in p for p in metadata)
    assert not [p for p in metadata if "/lib-3.0-" in p or "/lib-2.0-" in p]
