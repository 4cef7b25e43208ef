"""Lock the real web stack against the local mirror, stop the mirror, and install the lock into a
fresh venv with no network at all (a network namespace without even loopback, when available).

    python benchmarks/lock_offline.py [--cache benchmarks/.cache] [--format pylock|requirements]

The files come from safepip's verified-file cache, which the lock run filled; with
``--find-links`` the install reads the mirror's files from disk instead (``--no-index``).
Prints the pins, the time of each step and whether the installed set matches the lock."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corpus import WEB_STACK, Corpus, ensure_corpus, isolated_environ  # noqa: E402
from mirror import Mirror, load_files  # noqa: E402


def _no_network_prefix() -> list[str]:
    """``unshare -rn``: a new network namespace (loopback down) when this machine allows it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False)
    return [unshare, "-rn"] if probe.returncode == 0 else []


def _run(argv: Sequence[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv[:6])} ... exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        )
    return seconds


def _fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
    return path / "bin" / "python"


def _installed(python: Path) -> list[str]:
    code = (
        "import importlib.metadata as m\n"
        "print('\\n'.join(sorted(f\"{d.metadata['Name'].lower().replace('_', '-')}=={d.version}\""
        " for d in m.distributions())))"
    )
    out = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line]


def _locked(lock: Path) -> list[str]:
    if lock.name.endswith(".toml"):
        import tomllib

        data = tomllib.loads(lock.read_text())
        return sorted(f"{p['name']}=={p['version']}" for p in data["packages"])
    pins = []
    for line in lock.read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#", "-")):
            head = line.split(" ", 1)[0]
            name, version = head.split("==")
            pins.append(f"{name.split('[')[0].lower().replace('_', '-')}=={version}")
    return sorted(pins)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache", type=Path, default=HERE / ".cache", help="the mirror's files")
    parser.add_argument("--format", choices=("pylock", "requirements"), default="pylock")
    parser.add_argument(
        "--find-links",
        action="store_true",
        help="install with --no-index --find-links on the mirror's files, not the file cache",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    corpus = Corpus(args.cache)
    ensure_corpus(corpus, lambda t: print(t, file=sys.stderr, flush=True))
    projects = load_files(corpus.directories[:1])  # the web stack only
    safepip = [sys.executable, "-m", "safepip"]
    with tempfile.TemporaryDirectory(prefix="safepip-lock-offline-") as tmp:
        root = Path(tmp)
        env = isolated_environ(root / "home")
        (root / "home").mkdir()
        cache = root / "safepip-cache"
        lock = root / ("pylock.toml" if args.format == "pylock" else "requirements.txt")
        locker = _fresh_venv(root / "lock-venv")
        with Mirror(projects, latency=0.0, pep658=True) as mirror:
            lock_s = _run(
                [
                    *safepip,
                    "--python",
                    str(locker),
                    "lock",
                    "--cache-dir",
                    str(cache),
                    "-i",
                    mirror.simple_url,
                    "-o",
                    str(lock),
                    *WEB_STACK,
                ],
                env,
                root,
            )
        # The mirror is stopped: nothing answers on its port any more.
        offline = _no_network_prefix()
        target = _fresh_venv(root / "target")
        source = ["--cache-dir", str(cache)]
        if args.find_links:
            source = ["--no-cache-dir", "--no-index", "--find-links", str(corpus.web)]
        install_s = _run(
            [*offline, *safepip, "--python", str(target), "install", *source, "-r", str(lock)],
            env,
            root,
        )
        locked = _locked(lock)
        installed = [p for p in _installed(target) if not p.startswith(("pip==",))]
        missing = sorted(set(locked) - set(installed))
        print(f"locked {len(locked)} distributions ({args.format}) in {lock_s:.2f} s")
        network = "no network namespace" if offline else "mirror stopped"
        print(
            f"installed offline ({network}, "
            f"{'--no-index --find-links' if args.find_links else 'verified-file cache'}) "
            f"into a fresh venv in {install_s:.2f} s"
        )
        print(f"installed set {'matches' if not missing else 'DIFFERS from'} the lock")
        if missing:
            print("missing: " + ", ".join(missing))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
