"""In-sandbox PEP 517 driver, run as ``python -I -B _build_driver.py REQUEST``: sets resource
limits, calls one build-backend hook and writes its result as JSON. No pip, no network.

Standard library only: it runs inside the throwaway build environment."""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import traceback

__all__ = ["main"]


def _limit(kind: int, value: int) -> None:
    _soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass


def _apply_limits(limits: dict[str, int]) -> None:
    _limit(resource.RLIMIT_CPU, limits["cpu_seconds"])
    _limit(resource.RLIMIT_DATA, limits["memory_bytes"])
    _limit(resource.RLIMIT_FSIZE, limits["file_size_bytes"])
    _limit(resource.RLIMIT_NOFILE, limits["open_files"])
    _limit(resource.RLIMIT_CORE, 0)
    if hasattr(resource, "RLIMIT_NPROC"):
        _limit(resource.RLIMIT_NPROC, limits["processes"])


def _backend(spec: str, backend_path: list[str]) -> object:
    for entry in reversed(backend_path):
        sys.path.insert(0, os.path.abspath(entry))
    module_name, _, attrs = spec.partition(":")
    obj: object = importlib.import_module(module_name)
    for attr in filter(None, attrs.split(".")):
        obj = getattr(obj, attr)
    return obj


def main(argv: list[str]) -> int:
    with open(argv[1]) as f:
        request = json.load(f)
    _apply_limits(request["limits"])
    os.chdir(request["source"])
    result: dict[str, object] = {}
    try:
        backend = _backend(request["backend"], request["backend_path"])
        hook = getattr(backend, request["hook"], None)
        if hook is None:
            result = {"missing": True}
        else:
            result = {"value": hook(*request["args"], config_settings=None)}
    except BaseException as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    with open(request["result"], "w") as f:
        json.dump(result, f)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
