"""Measure PEP 740 verification.

    python benchmarks/attestations.py --recorded     # offline, over the recorded test pairs
    python benchmarks/attestations.py [REQ ...]      # the real default index (web stack default)

The second resolves the set with ``safepip install --dry-run --report``, then fetches (PyPI's
Integrity API) and verifies the provenance of every chosen file, timing each part.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.utils import canonicalize_name

from safepip.attest import Attested, Rejected, fetch_provenance, verify_provenance
from safepip.net import NetSettings, make_session


def main(requirements: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, HOME=tmp)
        env.pop("PIP_FIND_LINKS", None)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "safepip",
                "install",
                "--dry-run",
                "--ignore-installed",
                "--report",
                str(report),
                "-q",
                *requirements,
            ],
            check=True,
            env=env,
        )
        items = json.loads(report.read_text())["install"]
        session = make_session(NetSettings(cert=os.environ.get("PIP_CERT")))
        from pip._internal.models.index import PyPI

        fetch_times, verify_times = [], []
        attested = rejected = missing = 0
        trust = Path(tmp) / "sigstore"
        for item in items:
            url = item["download_info"]["url"]
            sha = item["download_info"]["archive_info"]["hashes"]["sha256"]
            filename = url.rsplit("/", 1)[-1]
            name = canonicalize_name(item["metadata"]["name"])
            version = item["metadata"]["version"]
            purl = f"{PyPI.url.rstrip('/')}/integrity/{name}/{version}/{filename}/provenance"
            t0 = time.perf_counter()
            raw = fetch_provenance(session, purl, 30)
            fetch_times.append(time.perf_counter() - t0)
            if not isinstance(raw, bytes):
                missing += 1
                continue
            t0 = time.perf_counter()
            outcome = verify_provenance(raw, filename, sha, None, trust)
            verify_times.append(time.perf_counter() - t0)
            if isinstance(outcome, Attested):
                attested += 1
                print(f"{name:24} {outcome.identity.display}")
            elif isinstance(outcome, Rejected):
                rejected += 1
                print(f"{name:24} REJECTED {outcome.reason}")
        print(
            f"\n{len(items)} files: {attested} attested, {rejected} rejected, {missing} without provenance"
        )
        if verify_times:
            print(
                f"verify per file: median {statistics.median(verify_times) * 1000:.1f} ms "
                f"(first {verify_times[0] * 1000:.1f} ms, total {sum(verify_times):.2f} s)"
            )
        print(
            f"fetch per file (sequential here): median {statistics.median(fetch_times) * 1000:.0f} ms"
        )
    return 0


def recorded(rounds: int = 20) -> int:
    data = Path(__file__).resolve().parent.parent / "tests" / "data" / "attestations"
    import hashlib

    pairs = [
        (p.name.removesuffix(".provenance"), p.read_bytes()) for p in data.glob("*.provenance")
    ]
    with tempfile.TemporaryDirectory() as tmp:
        trust = Path(tmp)
        for filename, raw in pairs:
            sha = hashlib.sha256((data / filename).read_bytes()).hexdigest()
            t0 = time.perf_counter()
            first = verify_provenance(raw, filename, sha, None, trust)
            cold = time.perf_counter() - t0
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                verify_provenance(raw, filename, sha, None, trust)
                times.append(time.perf_counter() - t0)
            assert isinstance(first, Attested), first
            print(
                f"{filename:64} first {cold * 1000:6.1f} ms, median {statistics.median(times) * 1000:5.1f} ms"
            )
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--recorded"]:
        sys.exit(recorded())
    sys.exit(
        main(
            sys.argv[1:]
            or ["flask", "requests", "sqlalchemy", "pydantic", "boto3", "celery", "rich", "httpx"]
        )
    )
