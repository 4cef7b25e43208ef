"""Bytecode for what the hand-off installed: pip installs with ``--no-compile`` and the installed
``.py`` files are compiled afterwards in parallel, with the result pip's own compilation gives
(the same ``.pyc`` files, listed the same way in each distribution's RECORD)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: an installer started early imports this module
    from safepip.config import Settings
    from safepip.models import VerifiedFile

__all__ = ["COMPILE_AND_RECORD", "CompileResult", "compile_installed", "compiles_afterwards"]

# The compilation of one file and the RECORD rows of its .pyc, as pip does them (compileall
# with force=True and quiet=True; path, no hash, no size; RECORD kept sorted), shared by the
# scripts below and by safepip.wheelinstall's installer: all run under the target interpreter
# and import compileall, contextlib, csv, io, os and warnings.
COMPILE_AND_RECORD = r"""
def compile_one(path):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore")
        try:
            return bool(compileall.compile_file(path, force=True, quiet=True))
        except Exception:
            return False


def record_rows(dist_info):
    with open(os.path.join(dist_info, "RECORD"), newline="", encoding="utf-8") as f:
        text = f.read()
    return text, [tuple(r) for r in csv.reader(text.splitlines())]


def sources(dist_info):
    return list(sources_and_digests(dist_info))


def sources_and_digests(dist_info):
    site = os.path.dirname(dist_info)
    seen = {}
    for row in record_rows(dist_info)[1]:
        if not row:
            continue
        full = os.path.normpath(os.path.join(site, row[0]))
        if full.endswith(".py") and full not in seen and os.path.isfile(full):
            seen[full] = row[1] if len(row) > 1 else ""
    return seen


def add_to_record(dist_info, pycs):
    site = os.path.dirname(dist_info)
    text, rows = record_rows(dist_info)
    known = {r[0] for r in rows if r}
    for pyc in pycs:
        rel = os.path.relpath(pyc, site).replace(os.path.sep, "/")
        if rel not in known:
            rows.append((rel, "", ""))
    rows = sorted(tuple(str(x) for x in (list(r) + ["", ""])[:3]) for r in rows if r)
    ending = "\r\n" if "\r\n" in text else "\n"
    record = os.path.join(dist_info, "RECORD")
    tmp = record + ".safepip-tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator=ending).writerows(rows)
    os.replace(tmp, record)
"""

# Runs under the target interpreter, so the bytecode is that interpreter's. It compiles exactly
# what pip would (every installed file of each distribution ending in .py, as compileall does
# with force=True and quiet=True), in a pool of processes, then adds each .pyc to RECORD as
# pip does (path, no hash, no size), keeping RECORD sorted as pip writes it.
_COMPILE = (
    r"""
import sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
import compileall, contextlib, csv, importlib.metadata as md, importlib.util, io, json, os
import warnings
from concurrent.futures import ProcessPoolExecutor

"""
    + COMPILE_AND_RECORD
    + r"""
def main():
    wanted = json.load(sys.stdin)
    jobs = []
    for name, version in wanted:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        if dist.version != version:
            continue
        dist_info = str(dist._path)
        jobs.append((dist_info, sources(dist_info)))
    paths = [p for _, ps in jobs for p in ps]
    workers = max(1, min(os.cpu_count() or 1, 8, len(paths) // 32 or 1))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            ok = dict(zip(paths, pool.map(compile_one, paths, chunksize=16)))
    else:
        ok = {p: compile_one(p) for p in paths}
    compiled = 0
    for dist_info, ps in jobs:
        pycs = [importlib.util.cache_from_source(p) for p in ps if ok.get(p)]
        add_to_record(dist_info, [p for p in pycs if os.path.exists(p)])
        compiled += len(pycs)
    json.dump({"compiled": compiled, "failed": sum(1 for v in ok.values() if not v)}, sys.stdout)

if __name__ == "__main__":
    main()
"""
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CompileResult:
    """How many files were compiled, and how many compileall could not compile."""

    compiled: int
    failed: int


def compiles_afterwards(settings: Settings) -> bool:
    """Whether the hand-off leaves bytecode to :func:`compile_installed`.

    Only for installs into the target environment itself, and never when the user asked for
    ``--no-compile``; installs elsewhere (``--target``, ``--prefix``, ``--root``, ``--user``)
    keep pip's own compilation."""
    return (
        settings.compile
        and settings.command == "install"
        and not settings.dry_run
        and not (settings.target_dir or settings.prefix or settings.root or settings.user)
    )


def compile_installed(
    settings: Settings,
    target_python: str,
    files: Sequence[VerifiedFile],
    environ: Mapping[str, str],
    timeout: float = 900.0,
) -> CompileResult | None:
    """Compile the ``.py`` files of the distributions just installed, in parallel, under the
    target interpreter. ``None`` when it could not run (the files stay installed; Python
    compiles them on first import, as after ``--no-compile``)."""
    if not compiles_afterwards(settings) or not files:
        return None
    wanted = [(vf.pin.name, str(vf.pin.version)) for vf in files]
    # The same environment pip ran in: PYTHONPYCACHEPREFIX and SOURCE_DATE_EPOCH mean the same.
    env = {k: v for k, v in environ.items() if not k.startswith("PIP_")}
    try:
        proc = subprocess.run(
            [target_python, "-c", _COMPILE],
            input=json.dumps(wanted),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    try:
        data = json.loads(proc.stdout)
        return CompileResult(compiled=int(data["compiled"]), failed=int(data["failed"]))
    except (ValueError, KeyError, TypeError):
        return None
