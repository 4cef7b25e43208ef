"""The resolver's view of the indexes: each project looked up where policy says, every index in
parallel, the decision of ``policy.decide`` applied, shown with -v and kept for the report."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from packaging.utils import NormalizedName

from safepip.errors import IndexUnavailable, PolicyRefusal, UsageError
from safepip.index import IndexClient
from safepip.indexpolicy import read_index_policy
from safepip.models import FileLink, IndexSource, ProjectPage
from safepip.policy import (
    Allowed,
    Decision,
    IndexPolicy,
    Refused,
    SourcePage,
    decide,
    index_label,
    sources_to_look_up,
)
from safepip.policyfile import Policy
from safepip.report import Reporter

__all__ = ["PROCEED_WITHOUT_INDEX", "IndexLinks"]

PROCEED_WITHOUT_INDEX = "--proceed-without-index"  # registered in config.SAFEPIP_OPTIONS


class IndexLinks:
    """Gives the resolver the files the index policy lets serve each project."""

    def __init__(
        self,
        client: IndexClient,
        policy: IndexPolicy,
        reporter: Reporter,
        proceed_without: Iterable[str] = (),
    ) -> None:
        self.client = client
        self.policy = policy
        self.reporter = reporter
        self.proceed_without = frozenset(proceed_without)
        self._decided: dict[NormalizedName, Decision] = {}
        self._skipped: set[str] = set()
        self._lock = threading.Lock()
        self._deciding: dict[NormalizedName, threading.Lock] = {}
        known = {s.url for s in client.sources} | {s.name for s in client.sources if s.name}
        unknown = sorted(self.proceed_without - known)
        if unknown:
            raise UsageError(
                f"{PROCEED_WITHOUT_INDEX} {unknown[0]}: no configured index has that name or URL",
                hint="give a name from your policy's [indexes] tables, or the index URL as configured",
            )
        for warning in policy.warnings:
            reporter.warning(warning)

    @classmethod
    def for_settings(
        cls,
        client: IndexClient,
        policy_files: Policy,
        extra: Mapping[str, Sequence[str]],
        reporter: Reporter,
    ) -> IndexLinks:
        return cls(
            client,
            read_index_policy(policy_files),
            reporter,
            extra.get(PROCEED_WITHOUT_INDEX, ()),
        )

    @property
    def decisions(self) -> dict[str, dict[str, Any]]:
        """Every decision made so far, as the report shows it (worked out when asked for: an
        offer lists every version an index has)."""
        with self._lock:
            decided = dict(self._decided)
        return {name: _decision_json(decision) for name, decision in decided.items()}

    def prefetch(self, names: Iterable[NormalizedName]) -> None:
        for name in names:
            self.client.prefetch_from(name, self._sources(name))

    def links_for(self, name: NormalizedName) -> Sequence[FileLink]:
        decision = self._decision(name)
        if isinstance(decision, Refused):
            raise _refusal(decision)
        return decision.links

    def _decision(self, name: NormalizedName) -> Decision:
        """Decided once per project: the resolver's look-ahead threads may ask at once, and
        wait for the one deciding."""
        with self._lock:
            known = self._decided.get(name)
            deciding = self._deciding.setdefault(name, threading.Lock())
        if known is not None:
            return known
        with deciding:
            with self._lock:
                known = self._decided.get(name)
            if known is not None:
                return known
            decision = decide(name, self._pages(name), self.policy)
            with self._lock:
                self._decided[name] = decision
        if isinstance(decision, Allowed):
            self.reporter.detail(
                f"{name}: from {', '.join(decision.indexes) or 'no index'} "
                f"[{decision.rule}]: {decision.reason}"
            )
        return decision

    def _pages(self, name: NormalizedName) -> list[SourcePage]:
        sources = self._sources(name)
        outcomes = self.client.pages_from(name, sources)
        pages: list[SourcePage] = []
        for source, outcome in zip(sources, outcomes, strict=True):
            if isinstance(outcome, IndexUnavailable):
                self._go_on_without(name, source, outcome)
            else:
                pages.append(SourcePage(source, outcome))
        return pages

    def project_pages(self, name: NormalizedName) -> list[ProjectPage]:
        """The pages of the indexes policy lets ``name`` be looked up on (fetched once), for the
        gates: a pinned project's name never goes to any other index."""
        outcomes = self.client.pages_from(name, self._sources(name))
        return [o for o in outcomes if isinstance(o, ProjectPage)]

    def _sources(self, name: NormalizedName) -> tuple[IndexSource, ...]:
        return tuple(
            s
            for s in sources_to_look_up(name, self.client.sources, self.policy)
            if s.url not in self._skipped
        )

    def _go_on_without(
        self, name: NormalizedName, source: IndexSource, outcome: IndexUnavailable
    ) -> None:
        """Skip an unreachable index the user said to go on without; otherwise fail closed."""
        label = index_label(source)
        if label in self.proceed_without or source.url in self.proceed_without:
            with self._lock:
                first = source.url not in self._skipped
                self._skipped.add(source.url)
            if first:
                self.reporter.warning(
                    f"going on without the index {label}, which cannot be reached "
                    f"({outcome.message}); the projects it owns may come from elsewhere"
                )
            return
        raise IndexUnavailable(
            f"cannot tell which index {name} comes from: the index {label} cannot be reached "
            f"({outcome.message})",
            hint=f"try again when it is back, or pass {PROCEED_WITHOUT_INDEX} {label} "
            "to go on without it",
            reference="index-unreachable",
        )


def _refusal(refused: Refused) -> PolicyRefusal:
    return PolicyRefusal(
        f"refusing {refused.project}: {refused.reason}",
        context=(*(o.describe() for o in refused.offers), f"rule: {refused.rule}"),
        hint=refused.hint,
        reference="dependency-confusion",
    )


def _decision_json(decision: Allowed | Refused) -> dict[str, Any]:
    offers = [
        {"index": o.index, "role": o.role, "versions": list(o.versions)} for o in decision.offers
    ]
    if isinstance(decision, Refused):
        return {
            "indexes": [],
            "rule": decision.rule,
            "reason": decision.reason,
            "refused": True,
            "settled-by": decision.settling_line,
            "offers": offers,
        }
    return {
        "indexes": list(decision.indexes),
        "rule": decision.rule,
        "reason": decision.reason,
        "offers": offers,
    }
