"""The C heap gives large freed buffers back (glibc's moving mmap threshold fixed)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# One large block freed first (which, left alone, raises glibc's threshold to its size), then
# 48 blocks of 1 MiB written, each followed by a block under the threshold (so that the heap cannot
# shrink from its top), then the blocks freed: what the process still holds is what the heap kept.
_KEPT_AFTER_FREEING = r"""
import sys
from safepip.heap import fix_mmap_threshold

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
first = b"x" * (8 << 20)
del first
before = rss_mib()
blocks, pins = [], []
for _ in range(48):
    blocks.append(b"x" * (1 << 20))  # written to: resident
    pins.append(b"x" * (100 << 10))  # from the heap, either way: after each block
del blocks
print(rss_mib() - before)
"""

linux_glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's malloc only",
)


def _kept_mib(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _KEPT_AFTER_FREEING, mode],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


@linux_glibc
def test_large_freed_blocks_are_returned_once_the_threshold_is_fixed() -> None:
    assert _kept_mib("fixed") < 8


@linux_glibc
def test_without_the_fix_the_heap_keeps_them() -> None:
    # The control: what the fix changes is there to change on this C library.
    assert _kept_mib("moving") > 32


def test_the_setting_is_refused_quietly_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    from safepip import heap

    monkeypatch.setattr(heap.sys, "platform", "darwin")
    assert heap.fix_mmap_threshold() is False


def test_the_command_collects_young_objects_less_often() -> None:
    # What `safepip` (the console script) runs: console_main, with main stubbed to report.
    script = (
        "import gc, safepip.cli as cli\n"
        "cli.main = lambda argv=None: print(gc.get_threshold()[0]) or 0\n"
        "cli.console_main()\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "10000"
