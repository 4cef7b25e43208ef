"""Per-build overhead of each sandbox backend against an unsandboxed build of the same sdist.

Hermetic: the sdist is a small setuptools project made here, the build environment holds the
setuptools installed with the test dependencies (repacked as a wheel). Each run unpacks the sdist
afresh and calls the three PEP 517 hooks safepip calls (get_requires_for_build_wheel,
prepare_metadata_for_build_wheel, build_wheel) through safepip's own driver.

    python benchmarks/sandbox_overhead.py --runs 15
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.buildkit import backend_wheel, make_project_sdist

from safepip import sandbox
from safepip.build import DRIVER, _driver_limits, _unpack_wheel, read_build_system
from safepip.sdist import unpack_sdist

HOOKS = (
    ("get_requires_for_build_wheel", False),
    ("prepare_metadata_for_build_wheel", True),
    ("build_wheel", True),
)


def make_env(base: Path) -> Path:
    env = base / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = next((env / "lib").glob("python*/site-packages"))
    wheel_name, data = backend_wheel("setuptools")
    wheel = base / wheel_name
    wheel.write_bytes(data)
    _unpack_wheel(wheel, site, env / "bin")
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(site)], check=True)
    return env


def one_build(backend: sandbox.Backend, env: Path, sdist: Path, work: Path) -> float:
    root = Path(tempfile.mkdtemp(dir=work))
    for sub in ("home", "tmp", "out"):
        (root / sub).mkdir()
    source = unpack_sdist(sdist, sdist.name, root / "src")
    system = read_build_system(source, sdist.name)
    limits = sandbox.Limits(timeout=300)
    env_vars = {
        "PATH": f"{env}/bin:/usr/bin:/bin",
        "HOME": str(root / "home"),
        "TMPDIR": str(root / "tmp"),
        "LANG": "C.UTF-8",
    }
    started = time.perf_counter()
    for hook, takes_dir in HOOKS:
        out = root / "out"
        shutil.rmtree(out)
        out.mkdir()
        request = root / "request.json"
        request.write_text(
            json.dumps(
                {
                    "hook": hook,
                    "args": [str(out)] if takes_dir else [],
                    "backend": system.backend,
                    "backend_path": list(system.backend_path),
                    "source": str(source),
                    "result": str(root / "result.json"),
                    "limits": _driver_limits(limits),
                }
            )
        )
        job = sandbox.Job(
            argv=(str(env / "bin" / "python"), "-I", "-B", str(DRIVER), str(request)),
            cwd=source,
            writable=root,
            readable=(env, DRIVER, Path(sys.base_prefix), Path(sys.executable).resolve()),
            env=env_vars,
            log=root / "log",
        )
        done = sandbox.run(backend, job, limits)
        if done.returncode != 0:
            raise SystemExit(
                f"{backend.name}: {hook} failed:\n{(root / 'log').read_text()[-2000:]}"
            )
    elapsed = time.perf_counter() - started
    sandbox.remove_tree(root)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="safepip-bench-") as tmp:
        base = Path(tmp)
        env = make_env(base)
        filename, data = make_project_sdist(
            "bench-demo", "1.0", setup_py="from setuptools import setup\nsetup()\n"
        )
        sdist = base / filename
        sdist.write_bytes(data)
        work = base / "work"
        work.mkdir()
        candidates: list[sandbox.Backend] = [sandbox.Unsandboxed()]
        for backend in sandbox.backends():
            reason = sandbox.self_test(backend)
            if reason is None:
                candidates.append(backend)
            else:
                print(f"{backend.name}: skipped ({reason})")
        times: dict[str, list[float]] = {b.name: [] for b in candidates}
        for backend in candidates:  # warm-up
            one_build(backend, env, sdist, work)
        for _ in range(args.runs):  # interleaved, so machine load hits every backend alike
            for backend in candidates:
                times[backend.name].append(one_build(backend, env, sdist, work))
        base_median = statistics.median(times["none"])
        print(f"median of {args.runs} builds (3 hooks each), sdist {filename}")
        for name, values in times.items():
            median = statistics.median(values)
            extra = "" if name == "none" else f"  overhead {1000 * (median - base_median):+.0f} ms"
            print(f"{name:>9}: {1000 * median:7.0f} ms{extra}")


if __name__ == "__main__":
    main()
