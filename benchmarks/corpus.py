"""The benchmark's distributions: downloaded once through pip into ``benchmarks/.cache``."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.utils import parse_wheel_filename
from packaging.version import Version

__all__ = [
    "BACKTRACK_REQUIREMENTS",
    "WEB_STACK",
    "Corpus",
    "download_environ",
    "ensure_corpus",
    "fresh_home_without_pip_config",
]

WEB_STACK = ("flask", "requests", "sqlalchemy", "pydantic", "boto3", "celery", "rich", "httpx")
BACKTRACK_REQUIREMENTS = ("botocore==1.31.0", "boto3", "urllib3")
# The backtracking case walks boto3 down from its newest release to the one botocore 1.31.0
# allows (1.28.0), and urllib3 down through every 2.x release to the 1.26 line botocore 1.31.0
# requires. A bounded set of versions keeps the
# download small: the newest BOTO3_NEWEST boto3 releases, then 1.28.0.
BOTO3_NEWEST = 50
_BACKTRACK_FIXED = ("boto3==1.28.0", "botocore==1.31.0", "s3transfer>=0.6,<0.7")
_CORPUS_VERSION = "2"
_DOWNLOAD_ONE = ("download", "-q", "--no-deps", "--only-binary", ":all:")


class Corpus:
    """Where the downloaded files live."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.web = root / "files" / "web"
        self.backtrack = root / "files" / "backtrack"
        self.marker = root / f"corpus-{_CORPUS_VERSION}.done"

    @property
    def directories(self) -> list[Path]:
        return [self.web, self.backtrack]

    def lock_lines(self) -> list[str]:
        """The web stack as a hashed lock: every downloaded file pinned by name, version, sha256."""
        lines = []
        for path in sorted(self.web.glob("*.whl")):
            name, version, _, _ = parse_wheel_filename(path.name)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            lines.append(f"{name}=={version} --hash=sha256:{digest}")
        return lines


def isolated_environ(home: Path) -> dict[str, str]:
    """A timed tool's environment: only PATH, locale and TMPDIR kept, a fresh HOME, no pip.conf,
    no prompts, and 127.0.0.1 never sent through a proxy."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(fresh_home_without_pip_config(home))
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    return env


def fresh_home_without_pip_config(home: Path) -> dict[str, str]:
    """The variables every run here sets: ``home`` as HOME and its caches, no pip.conf, no pip
    version check, no prompts."""
    return {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    }


def download_environ(home: Path) -> dict[str, str]:
    """pip's environment for the one download: no machine pip.conf, proxy CA kept (PIP_CERT)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env.update(fresh_home_without_pip_config(home))
    if os.environ.get("PIP_CERT"):
        env["PIP_CERT"] = os.environ["PIP_CERT"]
    return env


def _pip(args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"pip {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def _versions(project: str, env: dict[str, str]) -> list[Version]:
    out = _pip(["index", "versions", project], env)
    match = re.search(r"Available versions: (.*)", out)
    if match is None:
        raise SystemExit(f"cannot list the versions of {project}")
    return [Version(v.strip()) for v in match.group(1).split(",")]


def ensure_corpus(corpus: Corpus, log: object = print) -> None:
    """Download the web stack and the backtracking set once; later runs reuse them."""
    if corpus.marker.exists():
        return
    assert callable(log)
    corpus.web.mkdir(parents=True, exist_ok=True)
    corpus.backtrack.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="safepip-bench-dl-") as home:
        env = download_environ(Path(home))
        log("downloading the web stack through pip ...")
        _pip(["download", "-q", "--only-binary", ":all:", "-d", str(corpus.web), *WEB_STACK], env)
        log("downloading the backtracking set through pip ...")
        _pip(
            [*_DOWNLOAD_ONE, "-d", str(corpus.backtrack), *_BACKTRACK_FIXED],
            env,
        )
        boto3 = [v for v in _versions("boto3", env) if not v.is_prerelease][:BOTO3_NEWEST]
        urllib3 = [
            v for v in _versions("urllib3", env) if not v.is_prerelease and v >= Version("1.26.18")
        ]
        rounds: list[list[str]] = []
        for i in range(max(len(boto3), len(urllib3))):
            pins = []
            if i < len(boto3):
                pins.append(f"boto3=={boto3[i]}")
            if i < len(urllib3):
                pins.append(f"urllib3=={urllib3[i]}")
            rounds.append(pins)

        def fetch(pins: list[str]) -> None:
            _pip(
                [*_DOWNLOAD_ONE, "-d", str(corpus.backtrack), *pins],
                env,
            )

        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(fetch, rounds))
    corpus.marker.write_text("done\n")
