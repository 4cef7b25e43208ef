"""The wheel content gate's cost against the install it guards.

Times the gate (read every wheel once, read the target's installed files, judge) on a directory
of wheels against a fresh virtual environment, and the install of the same wheels into fresh
virtual environments: plain ``pip install --no-index`` and ``safepip install --no-index``
(the gate included). Prints the medians and the gate's share.

    python benchmarks/wheelgate_cost.py DIR REQUIREMENT [REQUIREMENT ...] [--runs 3]

The benchmark's web stack, fetched once (network use, for measurement only):

    pip download --only-binary :all: -d /tmp/web flask requests sqlalchemy pydantic boto3 \
        celery rich httpx
    python benchmarks/wheelgate_cost.py /tmp/web flask requests sqlalchemy pydantic boto3 \
        celery rich httpx
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable
from pathlib import Path

from packaging.utils import parse_wheel_filename

from safepip.ownership import read_ownership
from safepip.target import probe_target
from safepip.wheelgate import GatePolicy, WheelInput, judge_wheels, layout_for, scan_all


def fresh_venv(root: Path) -> Path:
    path = root / "venv"
    venv.EnvBuilder(with_pip=False).create(path)
    return path / "bin/python"


def clean_env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env.update({"PIP_CONFIG_FILE": os.devnull, "HOME": home, "PIP_NO_CACHE_DIR": "1"})
    return env


def time_gate(wheel_dir: Path, python: Path) -> float:
    target = probe_target(str(python), explicit=True)
    wheels = [
        WheelInput(parse_wheel_filename(p.name)[0], p.name, p)
        for p in sorted(wheel_dir.glob("*.whl"))
    ]
    t0 = time.perf_counter()
    layout = layout_for(target.purelib, target.platlib, target.scripts, target.data, target.include)
    ownership = read_ownership(layout.site_dirs, layout.scripts)
    findings = judge_wheels(wheels, scan_all(wheels), layout, ownership, GatePolicy())
    took = time.perf_counter() - t0
    refusals = [f for f in findings if f.action == "refuse"]
    assert not refusals, refusals
    return took


def time_install(argv: Callable[[Path], list[str]]) -> float:
    with tempfile.TemporaryDirectory(prefix="wheelgate-cost-") as tmp:
        python = fresh_venv(Path(tmp))
        t0 = time.perf_counter()
        proc = subprocess.run(
            argv(python), capture_output=True, text=True, env=clean_env(tmp), check=False
        )
        took = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("requirements", nargs="+")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    links = ["--no-index", "--find-links", str(args.dir)]
    pip = lambda py: [  # noqa: E731
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(py),
        "install",
        *links,
        *args.requirements,
    ]
    safepip = lambda py: [  # noqa: E731
        sys.executable,
        "-m",
        "safepip",
        "--python",
        str(py),
        "install",
        *links,
        *args.requirements,
    ]
    gate_runs, pip_runs, safepip_runs = [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="wheelgate-cost-") as tmp:
            gate_runs.append(time_gate(args.dir, fresh_venv(Path(tmp))))
        pip_runs.append(time_install(pip))
        safepip_runs.append(time_install(safepip))
    gate, plain, ours = (statistics.median(r) for r in (gate_runs, pip_runs, safepip_runs))
    count = len(list(args.dir.glob("*.whl")))
    print(f"{count} wheels, median of {args.runs} runs")
    print(f"gate (scan + installed files + judge): {gate:.3f} s")
    print(f"pip install --no-index:               {plain:.2f} s  (gate = {gate / plain:.1%})")
    print(f"safepip install --no-index (gate on): {ours:.2f} s  (gate = {gate / ours:.1%})")


if __name__ == "__main__":
    main()
