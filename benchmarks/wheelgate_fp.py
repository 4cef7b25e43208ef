"""False-positive run of the wheel content gate over real wheels.

Scans every wheel in the given directories once, judges them all as one plan (newest wheel of
each project) against an empty environment, lists every wheel whose site-packages ``.pth`` files
run code at start-up (the measurement behind the gate's built-in allow-list), and, with
``--install``, installs the wheels' projects with ``safepip install`` (gate on, no index, the
directories as find-links) into a fresh virtual environment, one requirement group after another.

    python benchmarks/wheelgate_fp.py DIR [DIR ...] [--install "flask rich" "numpy pandas" ...]

To fetch the wheels once (network use, for measurement only):

    pip download --only-binary :all: -d /tmp/stack flask requests sqlalchemy pydantic boto3 \
        celery rich httpx numpy pandas scipy matplotlib scikit-learn jupyterlab notebook \
        ipywidgets jupyterlab-git jupyterlab-lsp python-lsp-server jupyter-collaboration \
        jupyterlab-execute-time jupyter-resource-usage
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

from packaging.utils import parse_wheel_filename

from safepip.ownership import Ownership
from safepip.wheelgate import (
    GatePolicy,
    InstallLayout,
    WheelInput,
    _import_lines,
    judge_wheels,
    scan_all,
)


def newest_per_project(paths: list[Path]) -> list[Path]:
    best: dict[str, tuple[object, Path]] = {}
    for p in paths:
        name, version, _, _ = parse_wheel_filename(p.name)
        if name not in best or version > best[name][0]:  # type: ignore[operator]
            best[name] = (version, p)
    return sorted(p for _, p in best.values())


def startup_pth(contents: list) -> list[str]:  # type: ignore[type-arg]
    out = []
    for c in contents:
        for m in c.members:
            if m.scheme in ("purelib", "platlib") and "/" not in m.relpath:
                if m.relpath.endswith(".pth") and _import_lines(c.small_files.get(m.name, b"")):
                    out.append(f"{c.filename}: {m.relpath}")
                if m.relpath in ("sitecustomize.py", "usercustomize.py"):
                    out.append(f"{c.filename}: {m.relpath}")
    return out


def judge_as_one_plan(paths: list[Path]) -> None:
    wheels = [
        WheelInput(parse_wheel_filename(p.name)[0], p.name, p) for p in newest_per_project(paths)
    ]
    t0 = time.perf_counter()
    contents = scan_all(wheels)
    scanned = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        site = os.path.join(tmp, "lib", "site-packages")
        layout = InstallLayout(site, site, os.path.join(tmp, "bin"), tmp, tmp + "/include")
        findings = judge_wheels(wheels, contents, layout, Ownership(), GatePolicy())
    members = sum(len(c.members) for c in contents)
    print(f"scanned {len(wheels)} wheels ({members} files) in {scanned:.1f} s")
    by_action = collections.Counter(f.action for f in findings)
    print(f"one plan: {dict(by_action) or 'no findings'}")
    for f in findings:
        print(f"  {f.action:7} {f.rule:18} {f.project}: {f.message}")
    print("start-up code in site-packages (.pth import lines, sitecustomize):")
    for line in startup_pth(contents):
        print("  " + line)


def install_groups(dirs: list[Path], groups: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="wheelgate-fp-") as tmp:
        env_dir = Path(tmp, "venv")
        venv.EnvBuilder(with_pip=False).create(env_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
        env.update({"PIP_CONFIG_FILE": os.devnull, "HOME": tmp})
        for group in groups:
            report = Path(tmp, "report.json")
            links = [arg for d in dirs for arg in ("--find-links", str(d))]
            argv = [sys.executable, "-m", "safepip", "--python", str(env_dir / "bin/python")]
            argv += ["install", "--no-index", *links, "--report", str(report), *group.split()]
            t0 = time.perf_counter()
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
            took = time.perf_counter() - t0
            findings = (
                json.loads(report.read_text())["safepip"]["findings"] if report.exists() else []
            )
            print(f"install {group!r}: exit {proc.returncode} in {took:.1f} s, findings:")
            for f in findings:
                print(f"  {f['action']:7} {f['rule']:18} {f['project']}: {f['message']}")
            if proc.returncode != 0:
                print("  " + proc.stderr.strip().replace("\n", "\n  "))
        freeze = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(env_dir / "bin/python"), "list"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        print(f"installed: {len(freeze.stdout.splitlines()) - 2} distributions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--install", nargs="*", default=[], metavar="GROUP")
    args = parser.parse_args()
    paths = sorted(p for d in args.dirs for p in d.glob("*.whl"))
    judge_as_one_plan(paths)
    if args.install:
        install_groups(args.dirs, args.install)


if __name__ == "__main__":
    main()
