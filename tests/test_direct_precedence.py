"""A local project's build backend and dependencies under the index-precedence policy: an
internal index first on the command line never supplies a backend it does not own, and a
backend name mixed into the internal index is refused."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.buildkit import add_backends, backend_wheel, make_project_sdist
from tests.conftest import run_safepip
from tests.kit import Index, IndexServer, make_wheel, tree_digest
from tests.test_precedence import PrivateIndex

pytestmark = pytest.mark.integration


@pytest.fixture
def public() -> Iterator[IndexServer]:
    """Plays the public index (the policy declares it a mirror of it): the backend is here."""
    index = Index()
    add_backends(index, ("flit-core",))
    with IndexServer(index) as server:
        yield server


@pytest.fixture
def corp(tmp_path: Path) -> Iterator[PrivateIndex]:
    """The internal index (pypiserver): the user's own libraries, no build backend."""
    directory = tmp_path / "corp"
    directory.mkdir()
    server = PrivateIndex(directory)
    server.add(make_wheel("acme-billing", "1.0"))
    yield server
    server.close()


def _project(root: Path) -> Path:
    """A flit-core project that depends on an internal library."""
    pyproject = (
        '[build-system]\nrequires = ["flit_core>=3.2"]\nbuild-backend = "flit_core.buildapi"\n'
        '[project]\nname = "corp_tool"\nversion = "1.0"\ndescription = "t"\n'
        'dependencies = ["acme-billing"]\n'
    )
    _, data = make_project_sdist("corp_tool", "1.0", "flit", pyproject=pyproject)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        tf.extractall(root, filter="data")
    tree = root / "corp_tool-1.0"
    (tree / "PKG-INFO").unlink()
    for path in [tree, *tree.rglob("*")]:
        os.utime(path)
    return tree


def _install(
    target: Path, public: IndexServer, corp: PrivateIndex, tmp_path: Path, tree: Path
) -> tuple[int, str, dict[str, object]]:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'[indexes.public]\nurl = "{public.simple_url}"\nmirror = true\n\n'
        f'[indexes.corp]\nurl = "{corp.simple_url}"\ninternal = true\n'
    )
    report = tmp_path / "report.json"
    result = run_safepip(
        "install",
        "-v",
        "--python",
        str(target / "bin/python"),
        "--policy",
        str(policy),
        "--report",
        str(report),
        "-i",
        corp.simple_url,  # the internal index first, as in most corporate pip.conf files
        "--extra-index-url",
        public.simple_url,
        str(tree),
    )
    data = json.loads(report.read_text()) if report.exists() else {}
    return result.returncode, result.stdout + result.stderr, data


def test_backend_only_on_the_public_index_is_taken_from_there(
    public: IndexServer, corp: PrivateIndex, target_venv: Path, tmp_path: Path
) -> None:
    code, output, report = _install(target_venv, public, corp, tmp_path, _project(tmp_path))
    assert code == 0, output
    installed = {i["metadata"]["name"]: i for i in report["install"]}  # type: ignore[attr-defined]
    assert set(installed) == {"corp_tool", "acme-billing"}
    assert "flit-core: from public [" in output  # the build backend: from the index that owns it
    decisions = report["safepip"]["decisions"]  # type: ignore[index]
    assert decisions["flit-core"]["indexes"] == ["public"], decisions
    assert decisions["acme-billing"]["indexes"] == ["corp"]
    assert "acme-billing: from corp [specific-owner]" in output  # the runtime dependency too
    assert any(p.startswith("/simple/flit-core") for _, p, _ in public.requests)


def test_backend_name_mixed_into_the_internal_index_is_refused(
    public: IndexServer, corp: PrivateIndex, target_venv: Path, tmp_path: Path
) -> None:
    """The internal index lists its own flit-core beside a byte-identical copy of the public
    one (a virtual repository proxying the public index): which is the backend cannot be told,
    so nothing is built and nothing is installed."""
    corp.add(
        make_wheel("flit-core", "99.0", files={"flit_core/__init__.py": b"PWNED = True\n"}),
        backend_wheel("flit-core"),
    )
    before = tree_digest(target_venv)
    code, output, _ = _install(target_venv, public, corp, tmp_path, _project(tmp_path))
    assert code == 3, output
    assert "flit-core" in output and "dependency confusion" in output
    assert "Traceback" not in output
    assert tree_digest(target_venv) == before
