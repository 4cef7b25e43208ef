"""Metadata fetched ahead of the resolver: the likely dependency tree walked in parallel, and the
next candidates of a project the resolver backtracks on.

Speculation only warms the metadata cache. The resolver still asks for every piece of metadata
it uses and gets the same bytes, checked the same way; a speculative fetch that fails or is
never used changes nothing."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, runtime_checkable

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name

from safepip.models import FileLink

__all__ = ["MetadataPrefetch", "Speculator", "parse_requirement"]


@functools.lru_cache(maxsize=8192)
def parse_requirement(text: str) -> Requirement:
    """``Requirement(text)``, parsed once however many candidates declare it, here and in the
    resolver (the result is shared: callers never change it)."""
    return Requirement(text)


@runtime_checkable
class MetadataPrefetch(Protocol):
    """A metadata source that can fetch in the background."""

    def prefetch(self, link: FileLink, then: Callable[[bytes], None] | None = None) -> None: ...

    def cancel_prefetches(self) -> None: ...


LikelyLink = Callable[[NormalizedName, SpecifierSet], FileLink | None]
RequiresOf = Callable[[bytes], Sequence[str]]


class Speculator:
    """Walks the dependency tree the resolver will most likely walk, ahead of it."""

    def __init__(
        self,
        source: MetadataPrefetch,
        likely_link: LikelyLink,
        requires_of: RequiresOf,
        markers: Mapping[str, str],
        *,
        pages: Callable[[Iterable[NormalizedName]], None] | None = None,
        workers: int = 16,
        max_projects: int = 2000,
    ) -> None:
        self._source = source
        self._pages = pages
        self._likely_link = likely_link
        self._requires_of = requires_of
        self._markers = dict(markers)
        self._max_projects = max_projects
        self._lock = threading.Lock()
        self._seen: set[tuple[NormalizedName, str, frozenset[str]]] = set()
        self._skipped: set[NormalizedName] = set()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="safepip-speculate")
        self._closed = False

    def walk(
        self, name: NormalizedName, specifier: SpecifierSet, extras: frozenset[str] = frozenset()
    ) -> None:
        """Fetch, in the background, the metadata of the version of ``name`` the resolver will
        most likely choose, then of its dependencies, recursively. Each project is looked at
        again for each new range asked of it (a dependency that rules out the newest version
        makes the likely one another); each file is fetched once."""
        key = (name, str(specifier), extras)
        with self._lock:
            if (
                self._closed
                or name in self._skipped
                or key in self._seen
                or len(self._seen) >= self._max_projects
            ):
                return
            self._seen.add(key)
            if self._pages is not None:
                # The page is asked for now: the step may wait behind others for a thread.
                self._pages((name,))
            try:
                self._pool.submit(self._step, name, specifier, extras)
            except RuntimeError:
                pass

    def skip(self, names: Iterable[NormalizedName]) -> None:
        """Never look these projects up (they come from direct references, not an index)."""
        with self._lock:
            self._skipped.update(names)

    def ahead(self, links: Sequence[FileLink]) -> None:
        """Fetch the metadata of the candidates the resolver will try next."""
        for link in links:
            if link.is_wheel:
                self._source.prefetch(link)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._source.cancel_prefetches()

    def _step(self, name: NormalizedName, specifier: SpecifierSet, extras: frozenset[str]) -> None:
        try:
            link = self._likely_link(name, specifier)
        except Exception:
            return  # the resolver meets the same error itself, and reports it
        if link is None or not link.is_wheel:
            return
        self._source.prefetch(link, then=lambda raw: self._children(raw, extras))

    def _children(self, raw: bytes, extras: frozenset[str]) -> None:
        try:
            requires = self._requires_of(raw)
        except Exception:
            return
        for name, specifier, child_extras in self._applicable(requires, extras):
            self.walk(name, specifier, child_extras)

    def _applicable(
        self, requires: Sequence[str], extras: frozenset[str]
    ) -> Iterator[tuple[NormalizedName, SpecifierSet, frozenset[str]]]:
        for text in requires:
            try:
                req = parse_requirement(text)
            except InvalidRequirement:
                continue
            if req.url:
                continue
            if req.marker is not None and not self._marker_holds(req.marker, extras):
                continue
            yield (
                canonicalize_name(req.name),
                req.specifier,
                frozenset(canonicalize_name(e) for e in req.extras),
            )

    def _marker_holds(self, marker: Marker, extras: frozenset[str]) -> bool:
        try:
            return any(
                marker.evaluate({**self._markers, "extra": extra}) for extra in ("", *extras)
            )
        except (InvalidMarker, ValueError, KeyError):
            return False
