"""Typosquat gate figures: false positives on real projects, and catches of known squats.

False positives: the lower half of the shipped popular list is checked against the upper half
only (as if the lower half were unknown names). Every flagged name is a real, legitimate
project that the gate would at least warn about.

Catches: names of known malicious squats (benchmarks/data/known-squats.tsv) against the whole
shipped list.

Refused or warned: the gate refuses a flagged name only when the index also shows the project
young or tiny. With --facts FILE, each flagged name's facts (first upload, release count) are
read from FILE; --fetch first fills in the names FILE lacks from pip's default index (its PEP 691
JSON page, fetched with safepip's own index client and network session, so PIP_CERT and the
proxy variables apply) using the gate's own functions (gates.project_facts, typosquat.judge).
Each name is judged as of the day its facts were fetched, so a rerun on the cached file gives
the same figures. A name the index does not list (most malicious projects are removed once
reported) has no first upload: the gate counts that as young, so it is refused.

--rejected measures the combination rules the gate leaves out, with what each would add.

    python benchmarks/typosquat_figures.py [--show] [--rejected]
        [--facts benchmarks/data/typosquat-facts.json [--fetch]]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name

from safepip.typosquat import (
    PopularNames,
    ProjectFacts,
    Resemblance,
    TyposquatPolicy,
    judge,
    load_popular_names,
)

HERE = Path(__file__).resolve().parent
Flagged = list[tuple[NormalizedName, Resemblance]]


def fetch_facts(names: Iterable[NormalizedName]) -> dict[str, dict[str, Any]]:
    """Each name's facts from pip's default index, as the typosquat gate computes them."""
    from pip._internal.models.index import PyPI

    from safepip.errors import IndexUnavailable
    from safepip.gates import project_facts
    from safepip.index import IndexClient
    from safepip.models import IndexSource
    from safepip.net import NetSettings, make_session

    source = IndexSource(url=PyPI.simple_url, public=True)
    out: dict[str, dict[str, Any]] = {}
    with make_session(NetSettings(cert=os.environ.get("PIP_CERT") or None)) as session:
        client = IndexClient(session, [source], timeout=60)
        names = list(names)
        client.prefetch(names)
        try:
            for name in names:
                (page,) = client.pages_from(name, [source])
                if isinstance(page, IndexUnavailable):
                    print(f"  cannot fetch {name}: {page}", file=sys.stderr)
                    continue
                facts = project_facts(page)
                out[name] = {
                    "first_upload": facts.first_upload.isoformat() if facts.first_upload else None,
                    "releases": facts.releases,
                    "files": len(page.files),
                    "status": page.status,
                    "fetched": datetime.datetime.now(datetime.timezone.utc).isoformat(
                        timespec="seconds"
                    ),
                }
        finally:
            client.close()
    return out


def load_facts(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    data: dict[str, dict[str, Any]] = json.loads(path.read_text())["facts"]
    return data


def save_facts(path: Path, facts: dict[str, dict[str, Any]]) -> None:
    doc = {
        "about": "typosquat gate facts per project from pip's default index "
        "(benchmarks/typosquat_figures.py --fetch); files = 0: the index lists none",
        "facts": dict(sorted(facts.items())),
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")


def verdicts(flagged: Flagged, facts: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """refuse / warn / unknown -> names, judged by the gate with the default policy."""
    out: dict[str, list[str]] = {"refuse": [], "warn": [], "unknown": []}
    for name, resemblance in flagged:
        entry = facts.get(name)
        if entry is None:
            out["unknown"].append(name)
            continue
        first = entry["first_upload"]
        when = datetime.datetime.fromisoformat(first) if first else None
        now = datetime.datetime.fromisoformat(entry["fetched"])
        finding = judge(resemblance, ProjectFacts(when, entry["releases"]), TyposquatPolicy(), now)
        out[finding.action].append(name)
    return out


def describe_verdicts(
    label: str, flagged: Flagged, facts: dict[str, dict[str, Any]], show: bool
) -> None:
    found = verdicts(flagged, facts)
    unlisted = [n for n in found["refuse"] if facts[n]["files"] == 0]
    line = f"  {label}: {len(found['refuse'])} refused"
    if unlisted:
        line += f" ({len(unlisted)} of them no longer on the index: first upload unknown)"
    line += f", {len(found['warn'])} warned"
    if found["unknown"]:
        line += f", {len(found['unknown'])} without index facts (use --fetch)"
    print(line)
    if show:  # every verdict on a project the index still lists
        for action in ("refuse", "warn"):
            for name in found[action]:
                entry = facts[name]
                if entry["files"]:
                    first = (entry["first_upload"] or "unknown")[:10]
                    print(
                        f"    {action}: {name} (first upload {first}, {entry['releases']} releases)"
                    )


def lower_half_flagged(shipped: PopularNames) -> tuple[Flagged, int]:
    names = list(shipped.rank)
    half = len(names) // 2
    upper = PopularNames(names[:half])
    flagged = [(n, upper.resemblance(n)) for n in names[half:]]
    return [(n, r) for n, r in flagged if r is not None], len(names) - half


def known_squats() -> list[tuple[NormalizedName, NormalizedName, str]]:
    rows = []
    for line in (HERE / "data/known-squats.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, imitates, kind = line.split("\t")
        rows.append((canonicalize_name(name), canonicalize_name(imitates), kind))
    return rows


def report_false_positives(flagged: Flagged, checked: int, show: bool) -> None:
    print(
        f"false positives: {len(flagged)} of {checked} lower-half projects resemble "
        f"an upper-half one ({100 * len(flagged) / checked:.1f}%)"
    )
    by_how: dict[str, int] = {}
    for _, r in flagged:
        by_how[r.how] = by_how.get(r.how, 0) + 1
    print("  by rule: " + ", ".join(f"{how}: {n}" for how, n in sorted(by_how.items())))
    if show:
        for n, r in flagged:
            print(f"  {n} ~ {r.popular} ({r.how})")


def report_catches(
    shipped: PopularNames, rows: Sequence[tuple[NormalizedName, NormalizedName, str]], show: bool
) -> dict[str, Flagged]:
    caught_by_kind: dict[str, Flagged] = {}
    for kind in ("typo", "combo"):
        subset = [(n, i) for n, i, k in rows if k == kind]
        hits = [(n, i, shipped.resemblance(n)) for n, i in subset]
        caught = [(n, r) for n, _, r in hits if r is not None]
        right = [1 for _, i, r in hits if r is not None and r.popular == i]
        print(
            f"known {kind} squats caught: {len(caught)} of {len(subset)} "
            f"({100 * len(caught) / len(subset):.0f}%), {len(right)} naming the imitated project"
        )
        if show:
            for n, i, r in hits:
                print(
                    f"  {'HIT ' if r else 'miss'} {n} (imitates {i})"
                    + (f" ~ {r.popular} ({r.how})" if r else "")
                )
        caught_by_kind[kind] = caught
    return caught_by_kind


def report_rejected_rules(shipped: PopularNames, combos: Sequence[NormalizedName]) -> None:
    """The figures behind the combination rules left out: what each would add."""
    from safepip import typosquat

    names = list(shipped.rank)
    upper, lower = names[: len(names) // 2], names[len(names) // 2 :]
    base = len(lower_half_flagged(shipped)[0])
    base_caught = sum(shipped.resemblance(n) is not None for n in combos)
    variants = [
        ("joined names from the top 200", "COMBINE_TOP", 200),
        ("joined names from the top 500", "COMBINE_TOP", 500),
        ('the word "fast" as a lure', "_LURES", (*typosquat._LURES, "fast")),
    ]
    print("combination rules left out (lower-half false positives, known combo squats caught):")
    for label, attribute, value in variants:
        kept = getattr(typosquat, attribute)
        setattr(typosquat, attribute, value)
        try:
            flagged = len(lower_half_flagged(load_popular_names())[0])
            caught = sum(load_popular_names().resemblance(n) is not None for n in combos)
        finally:
            setattr(typosquat, attribute, kept)
        print(f"  {label}: +{flagged - base} false positives, +{caught - base_caught} caught")
    top = {typosquat._collapse(n) for n in upper if len(typosquat._collapse(n)) >= 4}
    digit = [n for n in lower if re.fullmatch(r".*\D\d", n) and typosquat._collapse(n)[:-1] in top]
    print(f"  a popular name plus a trailing digit: +{len(digit)} ({', '.join(digit)})")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--show", action="store_true", help="list every flagged or missed name")
    parser.add_argument("--facts", type=Path, help="JSON cache of each flagged name's index facts")
    parser.add_argument(
        "--fetch", action="store_true", help="fetch the names --facts lacks from the index"
    )
    parser.add_argument(
        "--rejected", action="store_true", help="measure the combination rules left out"
    )
    args = parser.parse_args()
    if args.fetch and not args.facts:
        parser.error("--fetch needs --facts FILE to keep what it fetches")
    shipped = load_popular_names()
    flagged, checked = lower_half_flagged(shipped)
    report_false_positives(flagged, checked, args.show)
    squats = known_squats()
    caught = report_catches(shipped, squats, args.show)
    if args.rejected:
        report_rejected_rules(shipped, [n for n, _, kind in squats if kind == "combo"])
    if not args.facts:
        print("refused or only warned: needs each flagged project's index facts (--facts)")
        return 0
    facts = load_facts(args.facts)
    wanted = [n for n, _ in flagged] + [n for group in caught.values() for n, _ in group]
    missing = [n for n in dict.fromkeys(wanted) if n not in facts]
    if args.fetch and missing:
        facts.update(fetch_facts(missing))
        save_facts(args.facts, facts)
    print("refused or only warned, by the gate's default policy and each project's index facts:")
    describe_verdicts("lower-half false positives", flagged, facts, args.show)
    for kind, group in caught.items():
        describe_verdicts(f"caught known {kind} squats", group, facts, args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
