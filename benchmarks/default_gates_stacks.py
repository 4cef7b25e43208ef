"""Do the supply-chain gates, at their defaults, refuse anything in common stacks?

Runs `safepip install --dry-run` of a web stack and a scientific stack against the real default
index (PyPI), into a fresh empty virtual environment (so every project is new to it), with an
empty policy and an isolated HOME. The advisory database is built from an OSV zip if one is
given. Needs the network; honours PIP_CERT.

    python benchmarks/default_gates_stacks.py [--osv ../shared/data/osv-pypi-advisories.zip]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

STACKS = {
    "web": ["flask", "requests", "sqlalchemy", "pydantic", "boto3", "celery", "rich", "httpx"],
    "scientific": ["numpy", "pandas", "scipy", "matplotlib", "scikit-learn"],
}


def run_stack(name: str, projects: list[str], home: Path, env: dict[str, str]) -> int:
    target = home / f"venv-{name}"
    venv.EnvBuilder(with_pip=False).create(target)
    report = home / f"report-{name}.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "safepip",
            "install",
            "--dry-run",
            "--python",
            str(target / "bin/python"),
            "--report",
            str(report),
            *projects,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    findings = json.loads(report.read_text())["safepip"]["findings"] if report.is_file() else []
    counts = {a: sum(f["action"] == a for f in findings) for a in ("refuse", "warn", "report")}
    installs = len(json.loads(report.read_text())["install"]) if report.is_file() else 0
    print(
        f"{name} stack: exit {result.returncode}, {installs} projects planned, "
        f"{counts['refuse']} refused, {counts['warn']} warned, {counts['report']} reported"
    )
    for f in findings:
        if f["action"] != "report":
            print(f"  {f['action']}: {f['project']}: {f['message']}")
    if result.returncode != 0:
        print("  " + result.stderr.strip().replace("\n", "\n  "))
    return result.returncode


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--osv", help="an OSV zip to build the advisory database from")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "SAFEPIP_", "XDG_"))
        }
        env.update(
            HOME=str(home),
            XDG_CACHE_HOME=str(home / "cache"),
            XDG_CONFIG_HOME=str(home / "config"),
            PIP_CONFIG_FILE=os.devnull,
        )
        if os.environ.get("PIP_CERT"):
            env["PIP_CERT"] = os.environ["PIP_CERT"]
        if args.osv:
            subprocess.run(
                [sys.executable, "-m", "safepip", "advisories", "update", "--from", args.osv],
                env=env,
                check=True,
            )
        codes = [run_stack(name, projects, home, env) for name, projects in STACKS.items()]
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
