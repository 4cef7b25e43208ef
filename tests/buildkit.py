"""Build backends for hermetic build tests: real setuptools, hatchling and flit-core wheels,
repacked from the distributions installed with the test dependencies (no network), and sdist
builders for each backend."""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.metadata
import io
import tarfile
import zipfile
from collections.abc import Mapping

from packaging.utils import canonicalize_name

from tests.kit import Index

__all__ = [
    "BACKEND_PROJECTS",
    "add_backends",
    "backend_closure",
    "backend_wheel",
    "make_project_sdist",
]

# The build backends the tests use; what they need is found from their installed metadata.
# (editables: what hatchling asks for, through get_requires_for_build_editable, to build an
# editable wheel.)
BACKEND_PROJECTS = ("setuptools", "hatchling", "flit-core", "editables")


def backend_closure(roots: tuple[str, ...] = BACKEND_PROJECTS) -> list[str]:
    """The backends and every installed distribution they require (markers evaluated here)."""
    from packaging.requirements import Requirement

    seen: list[str] = []
    queue = list(roots)
    while queue:
        name = canonicalize_name(queue.pop(0))
        if name in seen:
            continue
        seen.append(name)
        for text in importlib.metadata.requires(name) or ():
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                queue.append(req.name)
    return seen


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@functools.cache
def backend_wheel(project: str) -> tuple[str, bytes]:
    """A py3-none-any wheel of an installed distribution, with a fresh RECORD."""
    dist = importlib.metadata.distribution(project)
    name = canonicalize_name(dist.metadata["Name"]).replace("-", "_")
    version = dist.version
    contents: dict[str, bytes] = {}
    dist_info = None
    for file in dist.files or ():
        path = str(file)
        if path.startswith("..") or "__pycache__" in path or path.endswith(".pyc"):
            continue
        if path.endswith(
            (
                ".dist-info/RECORD",
                ".dist-info/INSTALLER",
                ".dist-info/REQUESTED",
                ".dist-info/direct_url.json",
            )
        ):
            continue
        top = path.split("/", 1)[0]
        if top.endswith(".dist-info"):  # not a vendored project's dist-info deeper down
            dist_info = top
        contents[path] = file.locate().read_bytes()
    assert dist_info is not None, project
    contents[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: safepip-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [f"{p},{_record_hash(d)},{len(d)}" for p, d in contents.items()]
    record.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in contents.items():
            zf.writestr(path, data)
    return f"{name}-{version}-py3-none-any.whl", buf.getvalue()


def add_backends(index: Index, roots: tuple[str, ...] = BACKEND_PROJECTS) -> None:
    """Serve the build backends and their dependencies from ``index``."""
    for project in backend_closure(roots):
        index.add(backend_wheel(project), project=project)


_PYPROJECTS = {
    "setuptools": '[build-system]\nrequires = ["setuptools>=40.8.0"]\nbuild-backend = "setuptools.build_meta"\n'
    '[project]\nname = "{name}"\nversion = "{version}"\n',
    "hatchling": '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
    '[project]\nname = "{name}"\nversion = "{version}"\n'
    '[tool.hatch.build.targets.wheel]\npackages = ["{module}"]\n',
    "flit": '[build-system]\nrequires = ["flit_core>=3.2"]\nbuild-backend = "flit_core.buildapi"\n'
    '[project]\nname = "{module}"\nversion = "{version}"\ndescription = "test"\n',
}


def make_project_sdist(
    name: str,
    version: str,
    backend: str = "setuptools",
    *,
    setup_py: str | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    pyproject: str | None = None,
) -> tuple[str, bytes]:
    """An sdist for ``backend`` ("setuptools", "hatchling" or "flit"); ``setup_py`` (setuptools)
    is run by the build, which is how hostile fixtures attack."""
    module = canonicalize_name(name).replace("-", "_")
    base = f"{module}-{version}"
    members: dict[str, bytes] = {
        "pyproject.toml": (
            pyproject or _PYPROJECTS[backend].format(name=name, version=version, module=module)
        ).encode(),
        f"{module}/__init__.py": f"__version__ = {version!r}\n".encode(),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
    }
    if setup_py is not None:
        members["setup.py"] = setup_py.encode()
    members.update(extra_files or {})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for path, data in members.items():
            info = tarfile.TarInfo(f"{base}/{path}")
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return f"{base}.tar.gz", buf.getvalue()
