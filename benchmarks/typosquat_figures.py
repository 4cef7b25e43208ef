"""Typosquat gate figures: false positives on real projects, and catches of known squats.

False positives: the lower half of the shipped popular list is checked against the upper half
only (as if the lower half were unknown names). Every flagged name is a real, legitimate
project that the gate would at least warn about; it is refused only when its index also shows
it young or tiny (see --facts, which reads a JSON of {name: [first_upload_iso, releases]}).

Catches: names of known malicious squats (benchmarks/data/known-squats.tsv) against the whole
shipped list.

    python benchmarks/typosquat_figures.py [--show]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from safepip.typosquat import (
    PopularNames,
    ProjectFacts,
    TyposquatPolicy,
    judge,
    load_popular_names,
)

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--show", action="store_true", help="list every flagged or missed name")
    parser.add_argument("--facts", help="JSON {name: [first upload ISO date or null, releases]}")
    args = parser.parse_args()
    shipped = load_popular_names()
    names = list(shipped.rank)
    half = len(names) // 2
    upper = PopularNames(names[:half])
    flagged = [(n, upper.resemblance(n)) for n in names[half:]]
    flagged = [(n, r) for n, r in flagged if r is not None]
    print(
        f"false positives: {len(flagged)} of {len(names) - half} lower-half projects resemble "
        f"an upper-half one ({100 * len(flagged) / (len(names) - half):.1f}%)"
    )
    by_how: dict[str, int] = {}
    for _, r in flagged:
        by_how[r.how] = by_how.get(r.how, 0) + 1
    print("  by rule: " + ", ".join(f"{how}: {n}" for how, n in sorted(by_how.items())))
    if args.facts:
        facts = json.loads(Path(args.facts).read_text())
        now = datetime.datetime.now(datetime.timezone.utc)
        actions = []
        for n, r in flagged:
            first, releases = facts.get(n, [None, 0])
            when = datetime.datetime.fromisoformat(first) if first else None
            actions.append(judge(r, ProjectFacts(when, releases), TyposquatPolicy(), now).action)
        print(
            f"  with index facts: {actions.count('refuse')} refused, {actions.count('warn')} warned"
        )
    else:
        print("  refused or only warned: needs each flagged project's index data (--facts)")
    if args.show:
        for n, r in flagged:
            print(f"  {n} ~ {r.popular} ({r.how})")
    rows = []
    for line in (HERE / "data/known-squats.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, imitates, kind = line.split("\t")
        rows.append((name, imitates, kind))
    for kind in ("typo", "combo"):
        subset = [(n, i) for n, i, k in rows if k == kind]
        hits = [(n, i, shipped.resemblance(n)) for n, i in subset]
        caught = [h for h in hits if h[2] is not None]
        right = [h for h in caught if h[2] is not None and h[2].popular == h[1]]
        print(
            f"known {kind} squats caught: {len(caught)} of {len(subset)} "
            f"({100 * len(caught) / len(subset):.0f}%), {len(right)} naming the imitated project"
        )
        if args.show:
            for n, i, r in hits:
                print(
                    f"  {'HIT ' if r else 'miss'} {n} (imitates {i})"
                    + (f" ~ {r.popular}" if r else "")
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
