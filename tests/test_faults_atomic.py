"""All or nothing: a failed, interrupted or killed installation leaves the target exactly as it was
(or, when pip had already finished, complete), and the next run succeeds."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from safepip import journal
from safepip.cli import main
from tests.kit import Index, IndexServer, tree_digest

LIBS = 40  # with the app and the two versions of each, a many-wheel installation


def _site(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def _many(index: Index, version: str, *, broken_last: bool = False) -> None:
    """``app`` at ``version`` needs LIBS libraries at the same version (each with a module, a data
    file and a console script), and optionally a last one pip refuses half-way through."""
    names = [f"lib{i:02d}" for i in range(LIBS)]
    for name in names:
        index.wheel(
            name,
            version,
            files={
                f"{name}/__init__.py": f"VERSION = {version!r}\n".encode(),
                f"{name}/data_{version}.txt": b"x" * 100,
            },
            entry_points=f"[console_scripts]\n{name}-cli = {name}:main\n",
        )
    requires = [f"{n}=={version}" for n in names]
    if broken_last:
        # pip checks entry points only while installing the wheel: it fails after the others.
        index.wheel(
            "zbroken",
            version,
            requires=requires,
            entry_points="[console_scripts]\nzbroken = zbroken\n",
        )
        requires = ["zbroken==" + version]
    index.wheel("app", version, requires=requires)


@pytest.fixture
def many_index() -> Index:
    index = Index()
    _many(index, "1.0")
    _many(index, "2.0")
    return index


@pytest.fixture
def many_server(many_index: Index) -> Iterator[IndexServer]:
    with IndexServer(many_index) as srv:
        yield srv


def _argv(venv: Path, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "safepip", "--python", str(venv / "bin/python"), "install",
            "-q", "-i", url, *extra]  # fmt: skip


def _install(venv: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _argv(venv, url, *extra), capture_output=True, text=True, timeout=300, check=False
    )


def _journal_armed(venv: Path) -> bool:
    return any((_site(venv) / journal.JOURNAL_DIR).glob("txn-*/journal.json"))


def _start(venv: Path, url: str, spec: str) -> subprocess.Popen[str]:
    """Start safepip in a process group of its own, as a shell would."""
    return subprocess.Popen(
        _argv(venv, url, spec),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _start_and_wait_for_handoff(venv: Path, url: str, spec: str) -> subprocess.Popen[str]:
    """Start safepip and return once its rollback journal is written, i.e. pip is about to run
    or running."""
    proc = _start(venv, url, spec)
    deadline = time.monotonic() + 120
    while not _journal_armed(venv):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the hand-off never started"
        time.sleep(0.02)
    return proc


def _states(venv: Path, url: str) -> tuple[str, str]:
    """Digests of site-packages with everything at 2.0, then at 1.0 (the target ends at 1.0)."""
    assert _install(venv, url, "app==2.0").returncode == 0
    at_2 = tree_digest(_site(venv))
    assert _install(venv, url, "app==1.0").returncode == 0
    at_1 = tree_digest(_site(venv))
    assert at_1 != at_2
    return at_1, at_2


def _seed() -> int:
    return int(os.environ.get("SAFEPIP_FAULT_SEED", str(time.time_ns() % 1_000_000)))


@pytest.mark.slow
def test_interrupts_at_random_moments_leave_untouched_or_complete(
    many_server: IndexServer, target_venv: Path
) -> None:
    """SIGTERM to safepip, or SIGINT to its whole process group (Ctrl-C), at random moments of
    a 40-wheel upgrade or downgrade: the target ends untouched or complete, and the next run
    succeeds. Set SAFEPIP_FAULT_SEED to replay a failure."""
    url = many_server.simple_url
    digests = dict(zip(("1.0", "2.0"), _states(target_venv, url), strict=True))
    seed = _seed()
    rng = random.Random(seed)
    current = "1.0"
    outcomes: list[str] = []
    cache = Path(os.environ["XDG_CACHE_HOME"])
    for attempt in range(4):
        wanted = "2.0" if current == "1.0" else "1.0"
        if attempt == 3:  # any moment from the start: resolution, downloads, or the hand-off
            proc = _start(target_venv, url, f"app=={wanted}")
            time.sleep(rng.uniform(0.3, 3.0))
        else:
            proc = _start_and_wait_for_handoff(target_venv, url, f"app=={wanted}")
            time.sleep(rng.uniform(0.0, 2.5))
        if attempt in (1, 2):
            with contextlib.suppress(ProcessLookupError):  # it may have finished already
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        state = tree_digest(_site(target_venv))
        context = f"seed {seed}, attempt {attempt}, exit {proc.returncode}: {err}"
        assert "Traceback" not in err, context
        assert state in (digests[current], digests[wanted]), "partial install: " + context
        if state == digests[current]:
            # Exit 1 saying so; or, signalled while Python was still starting, killed by it.
            said = "restored" in err or "interrupted" in err
            assert (proc.returncode == 1 and said) or proc.returncode == -signal.SIGTERM, context
            outcomes.append("untouched")
        else:
            outcomes.append("complete")
        assert not _journal_armed(target_venv), context
        assert not list(cache.rglob(".partial-*")), "half-written cache entry: " + context
        # The next run succeeds: no stale lock, no half-written cache entry.
        again = _install(target_venv, url, f"app=={wanted}")
        assert again.returncode == 0, again.stderr
        assert tree_digest(_site(target_venv)) == digests[wanted]
        current = wanted
    print(f"seed {seed}: {outcomes}")


def _kill_during_handoff(venv: Path, url: str, spec: str) -> None:
    """SIGKILL safepip as soon as pip has installed part of ``spec``'s wheels."""
    version = spec.split("==")[1]
    proc = _start_and_wait_for_handoff(venv, url, spec)
    deadline = time.monotonic() + 120
    while not any(_site(venv).glob(f"lib*-{version}.dist-info")):
        assert proc.poll() is None, "pip finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _dist_infos(venv: Path) -> set[str]:
    return {p.name for p in _site(venv).glob("*.dist-info") if not p.name.startswith("pip")}


@pytest.mark.slow
def test_sigkill_leaves_a_journal_the_next_run_replays(
    many_server: IndexServer, target_venv: Path
) -> None:
    url = many_server.simple_url
    assert _install(target_venv, url, "app==1.0").returncode == 0
    before = tree_digest(_site(target_venv))
    _kill_during_handoff(target_venv, url, "app==2.0")
    # pip, in its own session, may still be running: it holds the journal's lock, so the next
    # run waits for it, then replays the journal. A dry run only replays.
    replay = _install(target_venv, url, "--dry-run", "app==2.0")
    assert replay.returncode == 0, replay.stderr
    assert "rolled back" in replay.stderr
    assert tree_digest(_site(target_venv)) == before
    assert not _journal_armed(target_venv)
    # Killed again; the same command run again (even if the orphaned pip finished, so that the
    # target looks satisfied) first rolls back, then completes.
    _kill_during_handoff(target_venv, url, "app==2.0")
    again = _install(target_venv, url, "app==2.0")
    assert again.returncode == 0, again.stderr
    assert "rolled back" in again.stderr
    assert _dist_infos(target_venv) == {
        f"{n}-2.0.dist-info" for n in ["app", *(f"lib{i:02d}" for i in range(LIBS))]
    }
    assert not (_site(target_venv) / journal.JOURNAL_DIR).exists()


def test_pip_failing_half_way_restores_everything(target_venv: Path) -> None:
    """pip refuses the last of 41 wheels after installing the others: safepip puts back all."""
    index = Index()
    _many(index, "1.0")
    _many(index, "2.0", broken_last=True)
    with IndexServer(index) as srv:
        assert _install(target_venv, srv.simple_url, "app==1.0").returncode == 0
        before = tree_digest(_site(target_venv))
        listing = sorted(p.name for p in (target_venv / "bin").iterdir())
        run = _install(target_venv, srv.simple_url, "app==2.0")
    assert run.returncode == 1, run.stderr
    assert "pip-failed" in run.stderr and "restored" in run.stderr
    assert "Traceback" not in run.stderr
    assert tree_digest(_site(target_venv)) == before
    assert sorted(p.name for p in (target_venv / "bin").iterdir()) == listing
    assert not list((_site(target_venv)).glob("~*")), "pip's stash was left behind"


# Pre-flight: what pip would refuse half-way is refused before it runs.


@pytest.fixture
def small_index(index: Index) -> Index:
    index.wheel("app", "1.0", requires=["lib"])
    index.wheel("lib", "1.0")
    index.wheel("lib", "2.0")
    return index


def _run_in_process(
    venv: Path, url: str, capfd: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    # A cache of its own: pip computes its default cache directory once per process.
    cache = ["--cache-dir", str(venv.parent / "cache")]
    code = main(["--python", str(venv / "bin/python"), "install", *cache, "-i", url, *extra])
    return code, capfd.readouterr().err


def test_too_little_space_is_refused_before_pip(
    small_index: Index,
    server: IndexServer,
    target_venv: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    before = tree_digest(target_venv)
    usage = shutil.disk_usage(target_venv)
    monkeypatch.setattr(journal.shutil, "disk_usage", lambda p: usage._replace(free=1024 * 1024))
    code, err = _run_in_process(target_venv, server.simple_url, capfd, "app")
    assert code == 1 and "insufficient-space" in err and "hint:" in err, err
    assert tree_digest(target_venv) == before


def test_unwritable_target_is_refused_before_pip(
    small_index: Index,
    server: IndexServer,
    target_venv: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    site = _site(target_venv)
    before = tree_digest(target_venv)
    if os.geteuid() == 0:  # root may write anywhere: simulate what a user would see
        real = os.access
        monkeypatch.setattr(journal.os, "access", lambda p, mode: Path(p) != site and real(p, mode))
    else:
        site.chmod(0o555)
    try:
        code, err = _run_in_process(target_venv, server.simple_url, capfd, "app")
    finally:
        site.chmod(0o755)
    assert code == 1 and "target-not-writable" in err and str(site) in err, err
    assert tree_digest(target_venv) == before


def test_installed_without_record_is_refused_before_pip(
    small_index: Index,
    server: IndexServer,
    target_venv: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    site = _site(target_venv)
    legacy = site / "lib-0.5.dist-info"
    legacy.mkdir()
    (legacy / "METADATA").write_text("Metadata-Version: 2.1\nName: lib\nVersion: 0.5\n")
    (site / "lib").mkdir()
    (site / "lib" / "__init__.py").write_text("OLD = True\n")
    before = tree_digest(target_venv)
    code, err = _run_in_process(target_venv, server.simple_url, capfd, "lib==2.0")
    assert code == 1 and "cannot-uninstall" in err and "--ignore-installed" in err, err
    assert tree_digest(target_venv) == before


def test_replaced_files_come_back_after_pip_fails(
    small_index: Index,
    server: IndexServer,
    target_venv: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """pip replaced lib 1.0 by 2.0, then failed: the journal puts 1.0 back, byte for byte."""
    code, err = _run_in_process(target_venv, server.simple_url, capfd, "app", "lib==1.0")
    assert code == 0, err
    before = tree_digest(target_venv)
    real = journal.run_in_own_session

    def pip_then_failure(argv: list[str], env: dict[str, str]) -> int:
        assert real(argv, env) == 0  # pip really installs lib 2.0 ...
        return 1  # ... and then the hand-off fails

    monkeypatch.setattr(journal, "run_in_own_session", pip_then_failure)
    code, err = _run_in_process(target_venv, server.simple_url, capfd, "lib==2.0")
    assert code == 1 and "restored" in err, err
    assert tree_digest(target_venv) == before


def test_a_ctrl_c_while_the_last_threads_finish_ends_with_the_outcome_and_no_traceback() -> None:
    """Ctrl-C after the run's outcome is decided, while the interpreter waits for a pool's
    thread at exit: the process ends at once with that outcome, with no traceback."""
    script = r"""
import signal, sys, threading, os
from concurrent.futures import ThreadPoolExecutor
import safepip.cli as cli

released = threading.Event()

def lingering():
    # Wait (bounded) until the main thread is in threading's shutdown, joining this thread.
    main = threading.main_thread().ident
    for _ in range(20000):
        frame = sys._current_frames().get(main)
        names = set()
        while frame is not None:
            names.add(frame.f_code.co_name)
            frame = frame.f_back
        if "_shutdown" in names:
            break
        released.wait(0.001)
    os.kill(os.getpid(), signal.SIGINT)
    released.wait(30)  # held until the process ends

pool = ThreadPoolExecutor(1)
def main(argv=None):
    pool.submit(lingering)
    return 0
cli.main = main
cli.console_main()
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 0, out.stderr
