"""What the static pre-build scan says about the sdists of popular projects (uses the network).

Takes the first N names of shared/data/top-pypi-packages.tsv, fetches each project's newest sdist
from pip's default index, unpacks it with safepip's strict unpacker and scans it with an empty
policy. Prints how many would be refused, warned about or pass clean, and the count per rule.

    python benchmarks/scan_popular.py --top 300
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from packaging.utils import canonicalize_name, parse_sdist_filename
from packaging.version import InvalidVersion
from pip._internal.models.index import PyPI

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from safepip.build import read_build_system
from safepip.errors import SafepipError
from safepip.policyfile import Policy
from safepip.scan import scan_findings
from safepip.sdist import unpack_sdist

TOP = Path(__file__).resolve().parents[2] / "shared" / "data" / "top-pypi-packages.tsv"
MAX_BYTES = 40 << 20


def names(top: int, path: Path) -> list[str]:
    rows = [line.split("\t") for line in path.read_text().splitlines() if "\t" in line]
    return [name for rank, name in rows if rank.strip().isdigit()][:top]


def newest_sdist(session: requests.Session, name: str) -> tuple[str, str] | None:
    url = PyPI.simple_url.rstrip("/") + f"/{canonicalize_name(name)}/"
    page = session.get(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=60)
    page.raise_for_status()
    best = None
    for f in page.json().get("files", []):
        filename = f["filename"]
        if f.get("yanked") or not filename.endswith((".tar.gz", ".zip")):
            continue
        try:
            version = parse_sdist_filename(filename)[1]
        except (ValueError, InvalidVersion):
            continue
        if version.is_prerelease:
            continue
        if best is None or version > best[0]:
            best = (version, filename, f["url"], f.get("size") or 0)
    if best is None or best[3] > MAX_BYTES:
        return None
    return best[1], best[2]


def scan_one(session: requests.Session, name: str, work: Path) -> tuple[str, str, list[str]]:
    try:
        found = newest_sdist(session, name)
    except (requests.RequestException, ValueError) as exc:
        return name, f"error: {exc}", []
    if found is None:
        return name, "no-sdist", []
    filename, url = found
    target = work / name
    target.mkdir()
    archive = target / filename
    with session.get(url, stream=True, timeout=120) as r:
        r.raise_for_status()
        with archive.open("wb") as out:
            for chunk in r.iter_content(1 << 20):
                out.write(chunk)
    try:
        source = unpack_sdist(archive, filename, target / "src")
        system = read_build_system(source, filename)
    except SafepipError as exc:
        return name, f"unpack-refused: {exc.message[:100]}", []
    findings = scan_findings(canonicalize_name(name), source, Policy(), system.backend_path)
    if not findings:
        return name, "clean", []
    action = "refuse" if any(f.action == "refuse" for f in findings) else "warn"
    return name, action, [f.rule for f in findings]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--top", type=int, default=300)
    parser.add_argument("--list", type=Path, default=TOP)
    parser.add_argument("--jobs", type=int, default=8)
    args = parser.parse_args()
    session = requests.Session()
    with tempfile.TemporaryDirectory(prefix="safepip-scan-") as tmp:
        work = Path(tmp)
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(
                pool.map(lambda n: scan_one(session, n, work), names(args.top, args.list))
            )
    outcomes = collections.Counter(
        r[1] if not r[1].startswith(("error", "unpack")) else r[1].split(":")[0] for r in results
    )
    rules = collections.Counter(rule for _, _, rs in results for rule in rs)
    scanned = sum(outcomes[k] for k in ("clean", "warn", "refuse"))
    print(f"top {args.top} projects: {scanned} sdists scanned; {dict(outcomes)}")
    for rule, count in rules.most_common():
        print(f"  {rule}: {count}")
    for name, outcome, rs in results:
        if outcome == "refuse" or outcome.startswith("unpack"):
            print(f"  {outcome}: {name} {' '.join(rs)}")


if __name__ == "__main__":
    main()
