"""Real sdists built by `safepip wheel` in each sandbox backend and unsandboxed (uses the network).

For each project, `safepip wheel --no-deps --no-binary NAME SPEC` runs once to warm the caches,
then once per mode: each backend forced with SAFEPIP_SANDBOX_BACKEND, and the explicit opt-out
(`--unsafe-unsandboxed-build` with no backend allowed) as the unsandboxed baseline. Prints
success per mode and the wall time of each command.

    python benchmarks/sandbox_real_sdists.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECTS = (
    "docopt==0.6.2",
    "langdetect==1.0.9",
    "sgmllib3k==1.0.0",
    "antlr4-python3-runtime==4.9.3",
    # C extensions (each has an optional or required compiled part):
    "markupsafe==3.0.2",
    "pyyaml==6.0.2",
    "simplejson==3.19.3",
)
MODES = ("none", "bwrap", "userns", "landlock")


def run(spec: str, mode: str, cache: Path, out: Path, home: Path) -> tuple[bool, float, str]:
    name = spec.split("==")[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "SAFEPIP_"))}
    env.update({"HOME": str(home), "PIP_CONFIG_FILE": os.devnull})
    args = [sys.executable, "-m", "safepip", "wheel", "--no-deps", "--no-binary", name, spec]
    args += ["-w", str(out), "--cache-dir", str(cache)]
    if mode == "none":
        env["SAFEPIP_SANDBOX_BACKEND"] = "sandbox-exec"  # nothing works: only the opt-out builds
        args.append("--unsafe-unsandboxed-build")
    else:
        env["SAFEPIP_SANDBOX_BACKEND"] = mode
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False, timeout=900)
    elapsed = time.perf_counter() - started
    last = (done.stderr.strip().splitlines() or [""])[0]
    if done.returncode == 0:
        wheels = sorted(p.name for p in out.glob("*.whl"))
        last = wheels[0] if wheels else "no wheel"
    return done.returncode == 0, elapsed, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("projects", nargs="*", default=list(PROJECTS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="safepip-real-") as tmp:
        base = Path(tmp)
        cache, home = base / "cache", base / "home"
        home.mkdir()
        ok = dict.fromkeys(MODES, 0)
        total = dict.fromkeys(MODES, 0.0)
        for spec in args.projects:
            run(spec, "bwrap", cache, base / "warm", home)
            cells = []
            built = ""
            for mode in MODES:
                success, elapsed, why = run(spec, mode, cache, base / mode / spec, home)
                built = why if success else built
                ok[mode] += success
                total[mode] += elapsed
                cells.append(f"{mode} {'ok' if success else 'FAIL'} {elapsed:5.1f}s")
                if not success:
                    cells[-1] += f" ({why[:90]})"
            print(f"{spec:32} " + " | ".join(cells) + f"  -> {built}", flush=True)
        n = len(args.projects)
        for mode in MODES:
            extra = "" if mode == "none" else f", {total[mode] - total['none']:+.1f}s vs none"
            print(f"{mode:>9}: {ok[mode]}/{n} built, {total[mode]:.1f}s in all{extra}")


if __name__ == "__main__":
    main()
