"""The typosquatting gate: names that imitate a much more popular project."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name

from safepip.errors import ConfigError
from safepip.models import Finding

__all__ = [
    "PopularNames",
    "ProjectFacts",
    "Resemblance",
    "TyposquatPolicy",
    "judge",
    "load_popular_names",
    "typosquat_policy",
]

GATE = "typosquat"
# Prefixes and suffixes that squatters add to or drop from a popular name.
_AFFIXES_BEFORE = ("python3-", "python-", "python3", "python", "py3-", "py3", "py-", "py")
_AFFIXES_AFTER = ("-python3", "-python", "python3", "python", "-py3", "py3", "-py", "py")
# Characters that look alike in a terminal or a web page, folded to one form.
_LOOKALIKES = (("rn", "m"), ("vv", "w"), ("0", "o"), ("1", "l"), ("i", "l"), ("|", "l"))
# Below these lengths an edit of one (or two) letters lands on too many real projects.
MIN_LENGTH_ONE_EDIT = 5
MIN_LENGTH_TWO_EDITS = 10
# Combination squats. Words that dress a popular name up as its installer, update or faster
# edition ("install-pyyaml", "urllib3installer"): no project in the lower half of the shipped
# list is an upper-half name plus one of these (benchmarks/typosquat_figures.py). Words such as
# "fast", "async", "utils" or a trailing digit are left out: real forks and plugins use them.
_LURES = ("installer", "install", "setup", "updater", "update", "latest", "official", "faster")
# Two of the most popular names joined ("requests-pandas") imitate the more popular one. Beyond
# the top 100 the pairs are mostly real plugins (pytest-flask, flask-bcrypt).
COMBINE_TOP = 100
MIN_LENGTH_COMBINED = 4


@dataclass(frozen=True, slots=True)
class Resemblance:
    """``name`` looks like the popular project ``popular`` (ranked ``rank``, 1 = most used)."""

    name: NormalizedName
    popular: NormalizedName
    rank: int
    how: str


_SEPARATORS = str.maketrans("", "", "-_.")


def _collapse(name: str) -> str:
    return name.translate(_SEPARATORS)  # every - _ . dropped


def _skeleton(name: str) -> str:
    out = _collapse(name)
    for seen, means in _LOOKALIKES:
        out = out.replace(seen, means)
    return out


def _strip_affixes(name: str) -> set[str]:
    out = set()
    for prefix in _AFFIXES_BEFORE:
        if name.startswith(prefix) and len(name) - len(prefix) >= 3:
            out.add(name[len(prefix) :].strip("-"))
    for suffix in _AFFIXES_AFTER:
        if name.endswith(suffix) and len(name) - len(suffix) >= 3:
            out.add(name[: -len(suffix)].strip("-"))
    return out


def _without_word(collapsed: str, word: str) -> Iterable[str]:
    if collapsed.startswith(word):
        yield collapsed[len(word) :]
    if collapsed.endswith(word):
        yield collapsed[: -len(word)]


def edit_distance(a: str, b: str, limit: int = 2) -> int:
    """Damerau-Levenshtein distance (adjacent swaps count one), capped at ``limit + 1``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return min(prev[len(b)], limit + 1)


def _allowed_edits(length: int) -> int:
    if length >= MIN_LENGTH_TWO_EDITS:
        return 2
    return 1 if length >= MIN_LENGTH_ONE_EDIT else 0


def _edits_that_count(name: str, popular: str) -> int:
    """How many letters ``name`` changes in ``popular`` (1 or 2), or 0 when the change is no
    sign of imitation: too many edits for the length, digits only (``pyqt5``/``pyqt6``,
    ``cbor``/``cbor2``), or one short part of a family name (``mypy-boto3-rds``/``-drs``)."""
    a, b = _collapse(name), _collapse(popular)
    allowed = _allowed_edits(len(b))
    distance = edit_distance(a, b, allowed)
    if not 0 < distance <= allowed:
        return 0
    if re.sub(r"[0-9]", "", a) == re.sub(r"[0-9]", "", b):
        return 0
    parts_a, parts_b = name.split("-"), popular.split("-")
    if len(parts_a) == len(parts_b) > 1:
        differing = [(x, y) for x, y in zip(parts_a, parts_b, strict=True) if x != y]
        if len(differing) == 1:
            x, y = differing[0]
            longest = max(len(x), len(y))
            part_allowed = 2 if longest >= MIN_LENGTH_TWO_EDITS else int(longest >= 4)
            if edit_distance(x, y, part_allowed) > part_allowed:
                return 0
    return distance


def _deletes(word: str, depth: int) -> set[str]:
    out = {word}
    frontier = {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        out |= frontier
    return out


class PopularNames:
    """The reference list of popular projects, most popular first, with a fast neighbour search."""

    def __init__(self, names: Iterable[str]) -> None:
        self.rank: dict[NormalizedName, int] = {}
        for name in names:
            self.rank.setdefault(canonicalize_name(name), len(self.rank) + 1)
        # The indexes are built when first needed: most names asked about are popular
        # themselves and need none. The delete index is built one collapsed length at a time: a
        # name of length L can only share a delete variant with a popular name of length
        # L-2 .. L+2.
        self._by_collapsed: dict[str, NormalizedName] = {}
        self._by_skeleton: dict[str, NormalizedName] = {}
        self._by_length: dict[int, list[tuple[str, NormalizedName]]] = {}
        self._indexed = False
        self._indexed_lengths: set[int] = set()
        self._by_delete: dict[str, list[NormalizedName]] = {}

    def _index(self) -> None:
        if self._indexed:
            return
        self._indexed = True
        for name in self.rank:
            collapsed = _collapse(name)
            self._by_collapsed.setdefault(collapsed, name)
            self._by_skeleton.setdefault(_skeleton(name), name)
            if len(collapsed) >= MIN_LENGTH_ONE_EDIT:
                self._by_length.setdefault(len(collapsed), []).append((collapsed, name))

    def _index_lengths(self, lengths: Iterable[int]) -> None:
        for length in lengths:
            if length in self._indexed_lengths:
                continue
            self._indexed_lengths.add(length)
            depth = 2 if length >= MIN_LENGTH_TWO_EDITS else 1
            for collapsed, name in self._by_length.get(length, ()):
                for variant in _deletes(collapsed, depth):
                    self._by_delete.setdefault(variant, []).append(name)

    def __contains__(self, name: object) -> bool:
        return name in self.rank

    def __len__(self) -> int:
        return len(self.rank)

    def resemblance(self, name: str) -> Resemblance | None:
        """The most popular project ``name`` imitates, or ``None``; popular names imitate none."""
        name = canonicalize_name(name)
        if name in self.rank:
            return None
        found = [m for m in self._matches(name) if m.popular != name]
        return min(found, key=lambda m: m.rank) if found else None

    def _make(self, name: NormalizedName, popular: NormalizedName, how: str) -> Resemblance:
        return Resemblance(name=name, popular=popular, rank=self.rank[popular], how=how)

    def _matches(self, name: NormalizedName) -> Iterable[Resemblance]:
        self._index()
        collapsed = _collapse(name)
        if collapsed in self._by_collapsed:
            yield self._make(name, self._by_collapsed[collapsed], "the same name with - _ . moved")
        if _skeleton(name) in self._by_skeleton:
            yield self._make(name, self._by_skeleton[_skeleton(name)], "look-alike characters")
        for stripped in _strip_affixes(name):
            popular = self._by_collapsed.get(_collapse(stripped))
            if popular is not None:
                yield self._make(name, popular, "a popular name with a python/py prefix or suffix")
        yield from self._lures(name, collapsed)
        yield from self._joined(name)
        yield from self._edits(name, collapsed)

    def _lures(self, name: NormalizedName, collapsed: str) -> Iterable[Resemblance]:
        for word in _LURES:
            for rest in _without_word(collapsed, word):
                popular = self._by_collapsed.get(rest)
                if popular is not None and len(rest) >= MIN_LENGTH_COMBINED:
                    yield self._make(name, popular, "a popular name with an install/update word")

    def _top(self, part: str) -> NormalizedName | None:
        collapsed = _collapse(part)
        popular = self._by_collapsed.get(collapsed)
        if popular is None or len(collapsed) < MIN_LENGTH_COMBINED:
            return None
        return popular if self.rank[popular] <= COMBINE_TOP else None

    def _joined(self, name: NormalizedName) -> Iterable[Resemblance]:
        parts = name.split("-")
        for cut in range(1, len(parts)):
            left, right = self._top("-".join(parts[:cut])), self._top("-".join(parts[cut:]))
            if left is not None and right is not None and left != right:
                popular = min(left, right, key=self.rank.__getitem__)
                yield self._make(name, popular, "two popular names joined")

    def _edits(self, name: NormalizedName, collapsed: str) -> Iterable[Resemblance]:
        depth = 2 if len(collapsed) >= MIN_LENGTH_TWO_EDITS - 1 else 1
        self._index_lengths(range(len(collapsed) - 2, len(collapsed) + 3))
        seen: set[NormalizedName] = set()
        for variant in _deletes(collapsed, depth):
            for popular in self._by_delete.get(variant, ()):
                if popular in seen:
                    continue
                seen.add(popular)
                distance = _edits_that_count(name, popular)
                if distance:
                    how = "one letter different" if distance == 1 else "two letters different"
                    yield self._make(name, popular, how)


def load_popular_names(path: str | Path | None = None) -> PopularNames:
    """The shipped list, or the user's (one name a line, most popular first; ``#`` comments;
    a ``rank<TAB>name`` table is accepted too)."""
    try:
        if path is None:
            text = (
                resources.files("safepip")
                .joinpath("data/popular-projects.txt")
                .read_text(encoding="utf-8")
            )
        else:
            text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the popular-project list {path}: {exc.strerror}",
            hint="check [typosquat] popular-projects in the policy",
        ) from None
    names = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.lower() == "rank\tname":
            continue
        names.append(line.split("\t")[-1].strip())
    return PopularNames(names)


@dataclass(frozen=True, slots=True)
class ProjectFacts:
    """What the index says about a project's history."""

    first_upload: datetime.datetime | None
    releases: int


@dataclass(frozen=True, slots=True)
class TyposquatPolicy:
    enabled: bool = True
    allow: frozenset[NormalizedName] = frozenset()
    young_days: int = 90  # first upload more recent than this: young
    min_releases: int = 3  # fewer releases than this: tiny
    popular_projects: str | None = None


def typosquat_policy(trusted: Mapping[str, Any], project: Mapping[str, Any]) -> TyposquatPolicy:
    """``[typosquat]`` from the trusted policy; the project's may only tighten (no ``allow``)."""

    def integer(key: str, default: int) -> int:
        value = trusted.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"policy [typosquat] {key} must be a whole number, not {value!r}")
        return value

    allow = trusted.get("allow", [])
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise ConfigError("policy [typosquat] allow must be a list of project names")
    enabled = trusted.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError("policy [typosquat] enabled must be true or false")
    if project.get("enabled") is True:
        enabled = True
    young = max(integer("young-days", 90), _project_int(project, "young-days"))
    releases = max(integer("min-releases", 3), _project_int(project, "min-releases"))
    path = trusted.get("popular-projects")
    if path is not None and not isinstance(path, str):
        raise ConfigError("policy [typosquat] popular-projects must be a file path")
    return TyposquatPolicy(
        enabled=enabled,
        allow=frozenset(canonicalize_name(a) for a in allow),
        young_days=young,
        min_releases=releases,
        popular_projects=path,
    )


def _project_int(project: Mapping[str, Any], key: str) -> int:
    value = project.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def facts_from_uploads(
    versions: Sequence[str], uploads: Sequence[datetime.datetime | None]
) -> ProjectFacts:
    known = [u for u in uploads if u is not None]
    first = min(known) if known and len(known) == len(uploads) else None
    return ProjectFacts(first_upload=first, releases=len(set(versions)))


def judge(
    resemblance: Resemblance,
    facts: ProjectFacts,
    policy: TyposquatPolicy,
    now: datetime.datetime,
) -> Finding:
    """Refuse a look-alike that is also young or tiny; warn about any other look-alike."""
    young = facts.first_upload is None or now - facts.first_upload < datetime.timedelta(
        days=policy.young_days
    )
    tiny = facts.releases < policy.min_releases
    first = facts.first_upload.date().isoformat() if facts.first_upload else "unknown"
    why = []
    if young:
        why.append(f"first uploaded {first}")
    if tiny:
        why.append(f"{facts.releases} release(s)")
    message = (
        f"did you mean {resemblance.popular!r}? {resemblance.name!r} looks like that popular "
        f"project (rank {resemblance.rank}: {resemblance.how})"
    )
    if why:
        message += f", and it is {'young' if young else 'tiny'} ({', '.join(why)})"
    return Finding(
        gate=GATE,
        project=resemblance.name,
        message=message,
        action="refuse" if (young or tiny) else "warn",
        rule="typosquat-young-or-tiny" if (young or tiny) else "typosquat",
        hint=f"install {resemblance.popular!r} if you meant it; if {resemblance.name!r} is "
        f'right, allow it in the policy: [typosquat] allow = ["{resemblance.name}"]',
        details=(
            ("resembles", resemblance.popular),
            ("how", resemblance.how),
            ("first-upload", first),
            ("releases", str(facts.releases)),
        ),
    )
