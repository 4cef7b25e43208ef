"""The direct hand-off: verified wheels installed by pip's own wheel installer in one process
under the target interpreter, their bytecode compiled in parallel while the next wheels install.

pip's command line re-reads, re-resolves and re-hashes what safepip has already verified, then
compiles every file serially; for the plain case (new distributions into a virtual environment)
this runs the very function pip's ``install`` ends in, ``install_wheel``, for each wheel, so the
installed files, RECORD, INSTALLER, REQUESTED and entry-point scripts are pip's own, and compiles
as :mod:`safepip.bytecode` does (the same ``.pyc`` files and RECORD rows as pip's default).
Anything outside the plain case goes to pip's command line (:mod:`safepip.install`)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from safepip.bytecode import COMPILE_AND_RECORD
from safepip.config import Settings
from safepip.errors import HandoffError
from safepip.models import FileLink, VerifiedFile
from safepip.report import Reporter
from safepip.target import Target

__all__ = ["DirectInstall", "applies", "install_directly"]

# Runs under the target interpreter with safepip's pip importable (as ``pip --python`` runs it).
# The compile workers are forked before the first wheel is installed; each installed wheel's
# .py files (those its RECORD lists, as pip compiles them) go to the pool at once, and every
# .pyc is added to RECORD at the end, as safepip.bytecode does after pip's command line.
_INSTALLER = (
    r"""
import sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
import json
with open(sys.argv[1], encoding="utf-8") as f:
    spec = json.load(f)
sys.path.insert(0, spec["pip_parent"])
import compileall, contextlib, csv, importlib.util, io, logging, multiprocessing, os, warnings
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pip._internal.locations import get_scheme
from pip._internal.operations.install.wheel import install_wheel, wheel_root_is_purelib
from pip._internal.utils.wheel import parse_wheel
del sys.path[0]


class _Prefixed(logging.Formatter):
    def format(self, record):
        text = super().format(record)
        if record.levelno >= logging.ERROR:
            return "ERROR: " + text
        if record.levelno >= logging.WARNING:
            return "WARNING: " + text
        return text


def set_up_logging(level):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Prefixed("%(message)s"))
    logger = logging.getLogger("pip")
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    # As pip sets it up: its vendored libraries speak only at -v (distlib's "changing mode").
    vendored = "WARNING" if level in ("INFO", "ERROR") else "DEBUG"
    logging.getLogger("pip._vendor").setLevel(vendored)


def compile_many(paths):
    return [compile_one(path) for path in paths]


def dist_info_of(wheel, name, scheme):
    with zipfile.ZipFile(wheel) as zf:
        info_dir, metadata = parse_wheel(zf, name)
    lib_dir = scheme.purelib if wheel_root_is_purelib(metadata) else scheme.platlib
    return lib_dir, os.path.join(lib_dir, info_dir)


"""
    + COMPILE_AND_RECORD
    + r"""

def warn_about_conflicts(names):
    from pip._internal.operations.check import (
        _create_whitelist, check_package_set, create_package_set_from_installed
    )
    package_set, _ = create_package_set_from_installed()
    whitelist = _create_whitelist(set(names), package_set)
    missing, conflicting = check_package_set(
        package_set, should_ignore=lambda name: name not in whitelist
    )
    if missing or conflicting:
        from pip._internal.commands.install import InstallCommand
        InstallCommand._warn_about_conflicts(
            None, (package_set, (missing, conflicting)), "resolvelib"
        )


def chunks(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


def install_and_compile(pool):
    pending = []
    installed = []
    for item in spec["wheels"]:
        name, wheel = item["name"], item["path"]
        scheme = get_scheme(name, isolated=True)
        install_wheel(
            name,
            wheel,
            scheme=scheme,
            req_description=item["description"],
            pycompile=False,
            warn_script_location=spec["warn_script_location"],
            requested=item["requested"],
        )
        installed.append([name, item["version"]])
        if not spec["compile"]:
            continue
        _, dist_info = dist_info_of(wheel, name, scheme)
        paths = sources(dist_info)
        if pool is None:
            pending.append((dist_info, paths, [compile_many(paths)]))
        else:
            futures = [pool.submit(compile_many, c) for c in chunks(paths, 16)]
            pending.append((dist_info, paths, futures))
    compiled = failed = 0
    for dist_info, paths, parts in pending:
        try:
            ok = [x for part in parts for x in (part if pool is None else part.result())]
        except Exception:  # a worker died: compile here what it was given
            ok = compile_many(paths)
        pycs = [importlib.util.cache_from_source(p) for p, good in zip(paths, ok) if good]
        add_to_record(dist_info, [p for p in pycs if os.path.exists(p)])
        compiled += len(pycs)
        failed += ok.count(False)
    return {"installed": installed, "compiled": compiled, "failed": failed}


def main():
    set_up_logging(spec["log_level"])
    workers = max(1, min(os.cpu_count() or 1, 8))
    pool = None
    if spec["compile"] and workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        pool.submit(int).result()  # every worker forked now, before any file is written
    try:
        result = install_and_compile(pool)
    except Exception as exc:  # pip's refusal or anything else: one line, then the rollback
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # nothing written after this exits
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    if pool is not None:
        pool.shutdown()
    if spec["warn_conflicts"]:
        warn_about_conflicts([item["canonical"] for item in spec["wheels"]])
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
"""
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectInstall:
    """What the direct hand-off installed (name, version) and how many files it compiled."""

    installed: tuple[tuple[str, str], ...]
    compiled: int
    failed: int


def applies(settings: Settings, target: Target, files: Sequence[VerifiedFile]) -> bool:
    """Whether the direct hand-off gives exactly what pip's command line would: new wheels
    (nothing to uninstall or replace) into a virtual environment's own scheme, with none of the
    options that change where or how pip installs."""
    if settings.command != "install" or settings.dry_run or not files:
        return False
    if not target.is_virtualenv:
        return False
    if settings.target_dir or settings.prefix or settings.root or settings.user:
        return False
    if settings.platforms or settings.python_version or settings.implementation or settings.abis:
        return False
    if settings.force_reinstall or settings.ignore_installed or settings.exists_action:
        return False
    if settings.log:
        return False
    names = set()
    for vf in files:
        assert isinstance(vf.pin.source, FileLink)
        if vf.pin.direct is not None or not vf.pin.source.filename.endswith(".whl"):
            return False
        name = canonicalize_name(vf.pin.name)
        if name in target.installed or name in names:
            return False
        names.add(name)
    return True


def _log_level(verbosity: int) -> str:
    """pip's: -q shows warnings, -qq errors, -qqq only the critical; -v its debug messages."""
    if verbosity > 0:
        return "DEBUG"
    return {0: "INFO", -1: "WARNING", -2: "ERROR"}.get(verbosity, "CRITICAL")


def _spec(settings: Settings, files: Sequence[VerifiedFile]) -> dict[str, object]:
    import pip

    # As pip's command line: when no requirement was the user's own, every file is named.
    anyone_requested = any(vf.pin.requested for vf in files)
    return {
        "pip_parent": str(Path(pip.__file__).resolve().parent.parent),
        "compile": settings.compile,
        "warn_script_location": not settings.no_warn_script_location,
        "warn_conflicts": not settings.no_warn_conflicts,
        "log_level": _log_level(settings.verbosity),
        "wheels": [
            {
                "name": vf.pin.name,
                "canonical": str(canonicalize_name(vf.pin.name)),
                "version": str(vf.pin.version),
                "path": str(vf.path),
                "description": f"{vf.pin.name}=={vf.pin.version}",
                "requested": vf.pin.requested or not anyone_requested,
            }
            for vf in files
        ],
    }


def install_directly(
    settings: Settings,
    target_python: str,
    files: Sequence[VerifiedFile],
    environ: Mapping[str, str],
    reporter: Reporter,
) -> DirectInstall:
    """Install ``files`` (for which :func:`applies` holds) and compile them; raises
    :class:`HandoffError` when the installer fails (the journal then restores the target)."""
    from safepip.install import run_pip, scrubbed_pip_env

    reporter.detail(
        "installing the verified wheels with pip's wheel installer, compiling meanwhile"
    )
    reporter.info("Installing collected packages: " + ", ".join(vf.pin.name for vf in files))
    with tempfile.TemporaryDirectory(prefix="safepip-install-") as tmp:
        spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps(_spec(settings, files)), encoding="utf-8")
        argv = [target_python, "-c", _INSTALLER, str(spec_path), str(result_path)]
        # The same environment pip would run in: PYTHONPYCACHEPREFIX and SOURCE_DATE_EPOCH count.
        code = run_pip(argv, scrubbed_pip_env(environ))
        try:
            data = json.loads(result_path.read_text(encoding="utf-8")) if code == 0 else None
        except (OSError, ValueError):
            data = None
    if data is None:
        raise HandoffError(
            f"pip's wheel installer exited with status {code} while installing the verified files",
            hint="its message above says why",
        )
    result = DirectInstall(
        installed=tuple((str(n), str(v)) for n, v in data["installed"]),
        compiled=int(data["compiled"]),
        failed=int(data["failed"]),
    )
    reporter.info("Successfully installed " + " ".join(f"{n}-{v}" for n, v in result.installed))
    return result
