"""What one extra index costs: the benchmark's web stack resolved and verified by safepip against
a local mirror with added latency, with and without an extra (private) index beside it.

    python scripts/precedence_cost.py [--corpus DIR] [--latency S] [--reps N]

The extra index lists none of the web stack (a private index usually lists only its own names),
so every project is looked up on both indexes in parallel and the private one answers 404."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from corpus import WEB_STACK, isolated_environ  # noqa: E402
from mirror import Mirror, load_files  # noqa: E402


def _policy(path: Path, public: str, extra: str | None) -> Path:
    text = f'[indexes.public]\nurl = "{public}"\nmirror = true\n'
    if extra:
        text += f'\n[indexes.corp]\nurl = "{extra}"\ninternal = true\n'
    path.write_text(text)
    return path


def _timed(argv: Sequence[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--corpus",
        type=Path,
        default=ROOT / "benchmarks" / ".cache" / "files" / "web",
        help="the benchmark's web-stack wheels (benchmarks/run.py downloads them)",
    )
    parser.add_argument("--latency", type=float, default=0.03, help="seconds per request")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (median)")
    args = parser.parse_args(argv)
    projects = load_files([args.corpus])
    if not projects:
        raise SystemExit(f"no wheels under {args.corpus}: run benchmarks/run.py once first")
    times: dict[tuple[str, str], list[float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="safepip-precedence-") as tmp,
        Mirror(projects, latency=args.latency, pep658=True) as public,
        Mirror({}, latency=args.latency, pep658=True) as private,
    ):
        root = Path(tmp)
        target = root / "target"
        venv.EnvBuilder(with_pip=False).create(target)
        configs = {"one index": None, "one extra index": private.simple_url}
        for rep in range(args.reps):
            for label, extra in configs.items():
                home = root / f"home-{rep}-{label.replace(' ', '-')}"
                home.mkdir()
                policy = _policy(root / "policy.toml", public.simple_url, extra)
                cmd = [
                    sys.executable,
                    "-m",
                    "safepip",
                    "install",
                    "-q",
                    "--dry-run",
                    "--python",
                    str(target / "bin" / "python"),
                    "--policy",
                    str(policy),
                    "--cache-dir",
                    str(home / "cache"),
                    "-i",
                    public.simple_url,
                    *(["--extra-index-url", extra] if extra else []),
                    *WEB_STACK,
                ]
                env = isolated_environ(home)
                before = private.requests
                times.setdefault((label, "cold"), []).append(_timed(cmd, env))
                times.setdefault((label, "warm"), []).append(_timed(cmd, env))
                if extra and rep == 0:
                    lookups = private.requests - before
                    sys.stdout.write(f"extra index: {lookups} requests for two runs\n")
    sys.stdout.write(
        f"web stack ({len(projects)} projects on the mirror), {args.latency * 1000:.0f} ms per "
        f"request, safepip install --dry-run, median of {args.reps}\n"
    )
    for kind in ("cold", "warm"):
        base = statistics.median(times[("one index", kind)])
        extra_t = statistics.median(times[("one extra index", kind)])
        sys.stdout.write(
            f"{kind:5}  one index {base:6.2f} s   + one extra index {extra_t:6.2f} s   "
            f"cost {extra_t - base:+.2f} s ({(extra_t / base - 1) * 100:+.0f}%)\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
