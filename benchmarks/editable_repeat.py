"""`safepip install -e DIR` the first time (a sandboxed editable build) against the same command
again with nothing changed (the no-op fast path), and after only touching pyproject.toml.

Hermetic: a flit-core project made here, the backend served from a local index on 127.0.0.1.

    python benchmarks/editable_repeat.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.buildkit import add_backends
from tests.kit import Index, IndexServer
from tests.test_direct import _project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        index = Index()
        add_backends(index, ("flit-core",))
        tree = _project(root / "src", "bench-proj", "1.0", "flit")
        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, HOME=str(root))
        with IndexServer(index) as server:
            argv = [
                sys.executable,
                "-m",
                "safepip",
                "install",
                "--python",
                str(venv / "bin/python"),
            ]
            argv += ["-i", server.simple_url, "-e", str(tree)]

            def timed() -> tuple[float, bool]:
                start = time.perf_counter()
                done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
                elapsed = time.perf_counter() - start
                if done.returncode != 0:
                    raise SystemExit(done.stderr)
                return elapsed, "Building" in done.stdout

            first, built = timed()
            again = [timed() for _ in range(args.runs)]
            os.utime(tree / "pyproject.toml")
            touched, touched_built = timed()
    print(f"first install -e (built: {built}): {first:.2f} s")
    print(
        f"again, unchanged (built: {any(b for _, b in again)}): median "
        f"{statistics.median(t for t, _ in again):.2f} s over {args.runs} runs"
    )
    print(f"after touching pyproject.toml only (built: {touched_built}): {touched:.2f} s")


if __name__ == "__main__":
    main()
