"""Time safepip, pip and uv on the same work against a local mirror (or the real index).

    python benchmarks/run.py [--reps N] [--latency S] [--check] [--real-index] [--only OPS]

Every process runs with PIP_CONFIG_FILE=os.devnull and an isolated HOME; tools alternate within
each repetition and the table shows medians and the ratios safepip/pip and safepip/uv."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import venv
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corpus import (  # noqa: E402
    BACKTRACK_REQUIREMENTS,
    WEB_STACK,
    Corpus,
    ensure_corpus,
    fresh_home_without_pip_config,
)
from mirror import Mirror, load_files  # noqa: E402

TOOLS = ("safepip", "pip", "uv")


@dataclass(frozen=True)
class Goal:
    """safepip's time divided by ``against``'s must be at most ``limit``."""

    against: str
    limit: float
    text: str


GOALS: dict[str, Goal] = {
    "resolve": Goal("pip", 1 / 3, "≥3x faster than pip"),
    "install-cold": Goal("pip", 1 / 2.5, "≥2.5x faster than pip"),
    "no-op": Goal("pip", 1 / 2, "≥2x faster than pip"),
    "backtrack": Goal("uv", 2.0, "within 2x of uv"),
}
RSS_LIMIT_MB = 150.0


@dataclass
class Sample:
    seconds: float
    max_rss_mb: float  # the largest of the process and its descendants (VmHWM, polled)
    own_rss_mb: float  # the process itself (VmHWM, read until it exits)


@dataclass
class Results:
    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, op: str, tool: str, sample: Sample) -> None:
        self.samples.setdefault((op, tool), []).append(sample)

    def median(self, op: str, tool: str) -> float | None:
        got = self.samples.get((op, tool))
        return statistics.median(s.seconds for s in got) if got else None


class BenchFailure(Exception):
    pass


# ---------------------------------------------------------------------------- environments


class Workspace:
    """Temporary venvs, caches and homes, all under one directory."""

    def __init__(self, root: Path, real_index: bool) -> None:
        self.root = root
        self.real_index = real_index
        self._n = 0
        self.template = root / "template-venv"
        venv.EnvBuilder(with_pip=False, symlinks=True).create(self.template)
        site = next((self.template / "lib").glob("python*/site-packages"))
        import pip

        pip_dir = Path(pip.__file__).resolve().parent
        shutil.copytree(pip_dir, site / "pip", symlinks=True)
        for info in pip_dir.parent.glob("pip-*.dist-info"):
            shutil.copytree(info, site / info.name, symlinks=True)

    def fresh(self, kind: str) -> Path:
        self._n += 1
        path = self.root / f"{kind}-{self._n}"
        path.mkdir()
        return path

    def fresh_venv(self) -> Path:
        path = self.fresh("venv")
        shutil.rmtree(path)
        shutil.copytree(self.template, path, symlinks=True)
        return path

    def environ(self) -> dict[str, str]:
        home = self.fresh("home")
        keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(fresh_home_without_pip_config(home))
        env.update(
            {
                "XDG_DATA_HOME": str(home / ".local" / "share"),
                "UV_NO_CONFIG": "1",
                "UV_PYTHON_DOWNLOADS": "never",
                "PYTHONDONTWRITEBYTECODE": "",
            }
        )
        env.pop("PYTHONDONTWRITEBYTECODE")
        if self.real_index:
            proxies = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
            env.update({k: v for k, v in os.environ.items() if k.lower() in proxies})
            cert = os.environ.get("PIP_CERT")
            if cert:
                env["PIP_CERT"] = cert
                env["SSL_CERT_FILE"] = cert
        else:
            env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        return env


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise SystemExit(
            f"{name} is not installed in the benchmark environment (pip install {name})"
        )
    return found


def run_timed(argv: Sequence[str], env: dict[str, str], cwd: Path) -> Sample:
    """Run ``argv`` to completion; its wall time and peak RSS (largest of it and its children).
    The files the set-up and the previous run wrote are flushed first: their write-back is no
    part of this run's work."""
    if hasattr(os, "sync"):
        os.sync()
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=out, stderr=out)
        own = _HighWaterMark(proc.pid)
        _, status = os.waitpid(proc.pid, 0)
        elapsed = time.perf_counter() - start
        own.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            out.seek(0)
            text = out.read().decode(errors="replace")[-4000:]
            raise BenchFailure(f"{' '.join(argv)} exited {proc.returncode}:\n{text}")
    return Sample(seconds=elapsed, max_rss_mb=own.tree_peak_mb, own_rss_mb=own.peak_mb)


class _HighWaterMark:
    """Polls the VmHWM (peak RSS) of a process, and less often of each of its descendants, until
    it exits. (wait4's ru_maxrss cannot tell the descendants' peak: a child forked from this
    harness counts the harness's own pages until it execs, and wait4 reports that.)"""

    def __init__(self, pid: int, interval: float = 0.01, tree_every: int = 5) -> None:
        self.peak_mb = 0.0  # the process itself
        self.tree_peak_mb = 0.0  # the largest of it and its descendants
        self._pid = pid
        self._interval = interval
        self._tree_every = tree_every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        polls = 0
        while not self._done.is_set():
            own = _vm_hwm_mb(self._pid)
            if own is None:
                return
            self.peak_mb = max(self.peak_mb, own)
            self.tree_peak_mb = max(self.tree_peak_mb, own)
            if polls % self._tree_every == 0:
                for pid in _descendants(self._pid):
                    self.tree_peak_mb = max(self.tree_peak_mb, _vm_hwm_mb(pid) or 0.0)
            polls += 1
            self._done.wait(self._interval)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                children = Path(f"/proc/{parent}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                out.append(child)
                todo.append(child)
    return out


# ---------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Job:
    """One tool's command for one operation, given a target venv, cache and index."""

    target: Path
    cache: Path
    index_url: str | None
    out: Path

    def index(self) -> list[str]:
        return ["--index-url", self.index_url] if self.index_url else []


def install_cmd(tool: str, job: Job, extra: Sequence[str]) -> list[str]:
    py = str(job.target / "bin" / "python")
    cache = ["--cache-dir", str(job.cache)]
    if tool == "pip":
        return [py, "-m", "pip", "install", "-q", *cache, *job.index(), *extra]
    if tool == "safepip":
        return [_bin("safepip"), "install", "-q", "--python", py, *cache, *job.index(), *extra]
    # uv does not compile bytecode unless asked; pip and safepip do, so the work is the same.
    compiles = [] if "--dry-run" in extra else ["--compile-bytecode"]
    uv = [_bin("uv"), "pip", "install", "-q", "--python", py]
    return [*uv, *cache, *compiles, *job.index(), *extra]


def lock_cmd(tool: str, job: Job, reqs: Path) -> list[str]:
    py = str(job.target / "bin" / "python")
    cache = ["--cache-dir", str(job.cache)]
    if tool == "pip":
        out = ["-o", str(job.out / "pylock.toml")]
        return [py, "-m", "pip", "lock", "-q", *cache, *job.index(), "-r", str(reqs), *out]
    out = ["-o", str(job.out / "requirements.txt")]
    if tool == "pip-compile":
        # pip-compile runs on this interpreter (its pip), for the same platform as the target.
        index = job.index()
        return [
            _bin("pip-compile"),
            "-q",
            "--generate-hashes",
            "--no-header",
            *index,
            *out,
            str(reqs),
        ]
    if tool == "safepip":
        safepip = [_bin("safepip"), "lock", "-q", "--python", py]
        return [*safepip, *cache, *job.index(), "-r", str(reqs), *out]
    uv = [_bin("uv"), "pip", "compile", "-q", "--python", py, "--generate-hashes"]
    return [*uv, *cache, *job.index(), str(reqs), *out]


def installed_summary(target: Path) -> tuple[int, int]:
    """How many distributions (other than pip) and .pyc files ``target`` holds."""
    site = next((target / "lib").glob("python*/site-packages"))
    dists = [d for d in site.glob("*.dist-info") if not d.name.startswith("pip-")]
    pycs = sum(1 for p in site.rglob("*.pyc") if "/pip/" not in str(p))
    return len(dists), pycs


_COMPILE_CPU = r"""
import os, sys, time
site = sys.argv[1]
paths = []
for root, dirs, files in os.walk(site):
    dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith("pip")]
    paths += [os.path.join(root, f) for f in files if f.endswith(".py")]
start = time.process_time()
for path in paths:
    with open(path, "rb") as f:
        source = f.read()
    try:
        compile(source, path, "exec", dont_inherit=True)
    except Exception:
        pass
print(len(paths), time.process_time() - start)
"""


def compile_floor(target: Path) -> tuple[int, float]:
    """How many modules ``target`` holds and the CPU seconds its interpreter takes to compile
    them in memory (no file written): the part of a cold install with bytecode that no installer
    can skip, whichever of the three it is."""
    site = next((target / "lib").glob("python*/site-packages"))
    out = subprocess.run(
        [str(target / "bin" / "python"), "-c", _COMPILE_CPU, str(site)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]), float(out[1])


# ---------------------------------------------------------------------------- the benchmark


class Bench:
    def __init__(self, args: argparse.Namespace, ws: Workspace, results: Results) -> None:
        self.args = args
        self.ws = ws
        self.results = results
        self.files = ws.fresh("inputs")
        self.web_in = self.files / "web.in"
        self.web_in.write_text("\n".join(WEB_STACK) + "\n")
        self.back_in = self.files / "backtrack.in"
        self.back_in.write_text("\n".join(BACKTRACK_REQUIREMENTS) + "\n")
        self.lock = self.files / "web.lock"
        self.empty_venv = ws.fresh_venv()
        self.installed: dict[str, tuple[Path, Path]] = {}
        self.summaries: dict[str, tuple[int, int]] = {}
        self.lock_outputs: dict[str, Path] = {}

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def record(self, op: str, tool: str, argv: Sequence[str]) -> Sample:
        sample = run_timed(argv, self.ws.environ(), self.files)
        self.results.add(op, tool, sample)
        return sample

    def job(self, url: str | None, target: Path | None = None, cache: Path | None = None) -> Job:
        return Job(
            target=target or self.empty_venv,
            cache=cache or self.ws.fresh("cache"),
            index_url=url,
            out=self.ws.fresh("out"),
        )

    def resolve(self, op: str, tool: str, url: str | None, reqs: Path) -> None:
        self.record(op, tool, install_cmd(tool, self.job(url), ["--dry-run", "-r", str(reqs)]))

    def lock_op(self, tool: str, url: str | None) -> None:
        job = self.job(url)
        self.record("lock", tool, lock_cmd(tool, job, self.web_in))
        self.lock_outputs[tool] = job.out

    def install_cold(self, tool: str, url: str | None) -> None:
        job = self.job(url, target=self.ws.fresh_venv())
        self.record("install-cold", tool, install_cmd(tool, job, ["-r", str(self.lock)]))
        self.installed[tool] = (job.target, job.cache)
        self.summaries.setdefault(tool, installed_summary(job.target))

    def install_warm(self, tool: str, url: str | None) -> None:
        _, cache = self.installed[tool]
        job = self.job(url, target=self.ws.fresh_venv(), cache=cache)
        self.record("install-warm", tool, install_cmd(tool, job, ["-r", str(self.lock)]))

    def noop(self, tool: str, url: str | None) -> None:
        target, cache = self.installed[tool]
        job = self.job(url, target=target, cache=cache)
        self.record("no-op", tool, install_cmd(tool, job, ["-r", str(self.lock)]))

    def run(self, url: str | None, url_no658: str | None, lock_tools: Sequence[str]) -> None:
        ops: list[tuple[str, Callable[[str], None], Sequence[str]]] = [
            ("resolve", lambda t: self.resolve("resolve", t, url, self.web_in), TOOLS),
            ("lock", lambda t: self.lock_op(t, url), lock_tools),
            ("install-cold", lambda t: self.install_cold(t, url), TOOLS),
            ("install-warm", lambda t: self.install_warm(t, url), TOOLS),
            ("no-op", lambda t: self.noop(t, url), TOOLS),
            ("backtrack", lambda t: self.resolve("backtrack", t, url, self.back_in), TOOLS),
        ]
        if url_no658 is not None:
            ops.insert(
                1,
                (
                    "resolve-no658",
                    lambda t: self.resolve("resolve-no658", t, url_no658, self.web_in),
                    TOOLS,
                ),
            )
            ops.append(
                (
                    "backtrack-no658",
                    lambda t: self.resolve("backtrack-no658", t, url_no658, self.back_in),
                    TOOLS,
                )
            )
        only = set(self.args.only.split(",")) if self.args.only else None
        if only:
            needs_install = only & {"install-warm", "no-op"}
            if needs_install:
                only.add("install-cold")
            ops = [o for o in ops if o[0] in only]
        failed: set[str] = set()
        for rep in range(self.args.reps):
            order = TOOLS[rep % 3 :] + TOOLS[: rep % 3]
            for name, fn, tools in ops:
                if name in failed or (
                    name in ("install-warm", "no-op") and "install-cold" in failed
                ):
                    continue
                try:
                    for tool in [*order, *(t for t in tools if t not in TOOLS)]:
                        if tool in tools:
                            fn(tool)
                except BenchFailure as exc:
                    if not self.ws.real_index:
                        raise
                    # The real index changes under the benchmark: report the operation as not
                    # measured and go on with the others.
                    failed.add(name)
                    for key in [k for k in self.results.samples if k[0] == name]:
                        del self.results.samples[key]
                    lines = str(exc).splitlines()
                    why = next((x for x in lines if x.startswith("error")), lines[0])[:200]
                    self.results.notes.append(f"{name}: not measured ({why} ...)")
                    self.log(f"  {name} failed, left out: {exc}")
                    continue
                self.log(
                    f"  rep {rep + 1}/{self.args.reps} {name}: "
                    + ", ".join(
                        f"{t} {self.results.samples[(name, t)][-1].seconds:.2f}s"
                        for t in order
                        if (name, t) in self.results.samples
                    )
                )


def lock_supported(ws: Workspace) -> bool:
    """Whether this safepip serves ``lock`` (it is built in parallel with this harness)."""
    proc = subprocess.run(
        [_bin("safepip"), "lock", "--help"],
        env=ws.environ(),
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode == 0 and "-o" in proc.stdout


# ---------------------------------------------------------------------------- the table


def _pins_and_hashes(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    import re

    out = {}
    for line in text.replace("\\\n", " ").splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", line)
        if m:
            name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
            out[name] = (m.group(2), frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", line)))
    return out


def lock_notes(results: Results, outputs: dict[str, Path]) -> list[str]:
    """pip-compile's time beside safepip's, and whether both locked the same pins and hashes."""
    notes = []
    ours, theirs = results.median("lock", "safepip"), results.median("lock", "pip-compile")
    if ours is not None and theirs is not None:
        notes.append(
            f"lock, pip-compile --generate-hashes: {theirs:.2f} s (safepip/pip-compile = "
            f"{ours / theirs:.2f})"
        )
    if "safepip" in outputs and "pip-compile" in outputs:
        a = _pins_and_hashes((outputs["safepip"] / "requirements.txt").read_text())
        b = _pins_and_hashes((outputs["pip-compile"] / "requirements.txt").read_text())
        same = "yes" if a == b else f"NO ({sorted(set(a.items()) ^ set(b.items()))[:4]})"
        notes.append(
            f"lock: {len(a)} pins, {sum(len(h) for _, h in a.values())} hashes; same pins and "
            f"hashes as pip-compile --generate-hashes: {same}"
        )
    return notes


def floor_notes(results: Results, installed: dict[str, tuple[Path, Path]]) -> list[str]:
    """The cold install's floor on this machine: compiling the stack's modules alone, spread
    over every core, against pip's median."""
    if "safepip" not in installed:
        return []
    modules, cpu = compile_floor(installed["safepip"][0])
    cores = os.cpu_count() or 1
    pip = results.median("install-cold", "pip")
    share = f" = {cpu / cores / pip:.2f} of pip's install-cold" if pip else ""
    return [
        f"compiling the {modules} modules in memory alone: {cpu:.2f} CPU-s, {cpu / cores:.2f} s "
        f"on {cores} cores{share}"
    ]


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


@dataclass(frozen=True)
class Miss:
    """A goal the run missed: a time ratio, or the memory limit."""

    text: str
    memory: bool = False


def table(results: Results, title: str) -> tuple[str, list[Miss]]:
    lines = [
        f"### {title}",
        "",
        "| operation | safepip (s) | pip (s) | uv (s) | safepip/pip | safepip/uv | goal | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    misses: list[Miss] = []
    ops: list[str] = []
    for op, _ in results.samples:
        if op not in ops:
            ops.append(op)
    for op in ops:
        s, p, u = (results.median(op, t) for t in TOOLS)
        rp, ru = ratio(s, p), ratio(s, u)
        goal = GOALS.get(op)
        met = ""
        if goal is not None:
            got = rp if goal.against == "pip" else ru
            ok = got is not None and got <= goal.limit
            met = "yes" if ok else "NO"
            if not ok:
                misses.append(
                    Miss(
                        f"{op}: safepip/{goal.against} = "
                        + ("not measured" if got is None else f"{got:.2f}")
                        + f" (goal: {goal.text})"
                    )
                )

        def fmt(v: float | None, digits: int = 2) -> str:
            return "-" if v is None else f"{v:.{digits}f}"

        lines.append(
            f"| {op} | {fmt(s)} | {fmt(p)} | {fmt(u)} | {fmt(rp)} | {fmt(ru)} | "
            f"{goal.text if goal else ''} | {met} |"
        )
    web = [
        x
        for (op, t), xs in results.samples.items()
        if t == "safepip" and not op.startswith("backtrack")
        for x in xs
    ]
    if web:
        peak = max(x.own_rss_mb for x in web)
        with_children = max(x.max_rss_mb for x in web)
        lines.append("")
        lines.append(
            f"Peak RSS of safepip for the web stack: {peak:.0f} MB (goal < {RSS_LIMIT_MB:.0f} MB); "
            f"largest of it and its child processes (pip's hand-off, bytecode compilation): "
            f"{with_children:.0f} MB"
        )
        if peak >= RSS_LIMIT_MB:
            misses.append(
                Miss(f"peak RSS {peak:.0f} MB (goal < {RSS_LIMIT_MB:.0f} MB)", memory=True)
            )
    lines.extend(f"- {n}" for n in results.notes)
    return "\n".join(lines), misses


# ---------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=3, help="repetitions per tool (median)")
    parser.add_argument(
        "--latency", type=float, default=0.03, help="seconds added to every mirror request"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--real-index", action="store_true", help="also run against PyPI")
    parser.add_argument("--only", default="", help="comma-separated operations to run")
    parser.add_argument("--cache", type=Path, default=HERE / ".cache", help="download cache")
    parser.add_argument("--json", type=Path, help="write the raw samples here")
    parser.add_argument(
        "--serve", action="store_true", help="only serve the mirrors (for profiling) until killed"
    )
    return parser.parse_args(argv)


def serve(projects: dict[Any, Any], latency: float) -> int:
    with (
        Mirror(projects, latency=latency, pep658=True) as on,
        Mirror(projects, latency=latency, pep658=False) as off,
    ):
        print(f"PEP 658 on:  {on.simple_url}\nPEP 658 off: {off.simple_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def _raw(results: Results) -> dict[str, list[dict[str, float]]]:
    """Every sample of every operation and tool: its seconds and peak RSS (own, and the largest
    of it and its child processes)."""
    return {f"{o}/{t}": [asdict(x) for x in v] for (o, t), v in results.samples.items()}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    corpus = Corpus(args.cache)
    ensure_corpus(corpus, lambda t: print(t, file=sys.stderr, flush=True))
    projects = load_files(corpus.directories)
    if args.serve:
        return serve(projects, args.latency)
    all_misses: list[str] = []  # the mirror's goals; against the real index, the memory limit
    raw: dict[str, dict[str, list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="safepip-bench-") as tmp:
        ws = Workspace(Path(tmp), real_index=False)
        lock_tools = (*TOOLS, "pip-compile") if lock_supported(ws) else ("pip", "uv")
        results = Results()
        if "safepip" not in lock_tools:
            results.notes.append("lock: this safepip does not serve `lock` yet")
        with (
            Mirror(projects, latency=args.latency, pep658=True) as on,
            Mirror(projects, latency=args.latency, pep658=False) as off,
        ):
            bench = Bench(args, ws, results)
            bench.lock.write_text("\n".join(corpus.lock_lines()) + "\n")
            print(
                f"local mirror: {sum(len(v) for v in projects.values())} files, "
                f"{args.latency * 1000:.0f} ms per request, {args.reps} repetitions",
                file=sys.stderr,
            )
            bench.run(on.simple_url, off.simple_url, lock_tools)
        results.notes.extend(lock_notes(results, bench.lock_outputs))
        for tool, (dists, pycs) in bench.summaries.items():
            results.notes.append(f"cold install, {tool}: {dists} distributions, {pycs} .pyc files")
        results.notes.extend(floor_notes(results, bench.installed))
        text, misses = table(
            results,
            f"local mirror, {args.latency * 1000:.0f} ms per request, median of {args.reps}",
        )
        print(text)
        all_misses += [m.text for m in misses]
        raw["mirror"] = _raw(results)
        if args.real_index:
            real_root = Path(tmp) / "real"
            real_root.mkdir()
            ws_real = Workspace(real_root, real_index=True)
            real = Results()
            real_bench = Bench(args, ws_real, real)
            real_bench.lock.write_text("\n".join(corpus.lock_lines()) + "\n")
            real_bench.run(None, None, lock_tools)
            text, misses = table(real, f"the real default index, median of {args.reps}")
            # Its times are network-bound and reported only; the memory limit holds there too.
            all_misses += [f"real index: {m.text}" for m in misses if m.memory]
            print()
            print(text)
            raw["real"] = _raw(real)
    print(f"\n(took {time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1))
    if args.check and all_misses:
        print("\ngoals missed:\n" + "\n".join(f"  {m}" for m in all_misses), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchFailure as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(2)
