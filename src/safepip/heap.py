"""How this process manages its memory: the C heap and the cyclic garbage collector.

glibc's malloc serves a large block (an index page's body, its decoded text, a wheel member
read whole) from a mapping of its own, unmapped when freed, until the first such block is
freed: it then raises that threshold to the block's size (up to 32 MiB on 64-bit systems), so
later large blocks come from the heap instead, whose freed space stays with the process. The
index pages of large projects are megabytes each, read by several threads at once: against
PyPI, the peak RSS of a warm web-stack install went from about 151 MB with the moving threshold
to about 117-124 MB with it fixed at glibc's default. Other C libraries are left as they are.

CPython collects cyclic garbage after every 700 new container objects (2,000 from 3.13), and
every tenth of those collections looks at the older ones too. A resolution against PyPI keeps
hundreds of thousands of objects (the entries of the index pages) and makes few cycles, so the
collector walked the growing heap again and again: a dry run of the web stack took 2.5
CPU-seconds (median of five) with young collections every 10,000 objects, against 2.85 with
the default."""

from __future__ import annotations

import gc
import sys

__all__ = ["collect_less_often", "fix_mmap_threshold"]

_YOUNG_COLLECTION_EVERY = 10_000
_M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
_DEFAULT_MMAP_THRESHOLD = 128 * 1024


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at its default (setting it turns its growth off); whether
    the C library took the setting."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _DEFAULT_MMAP_THRESHOLD) == 1)


def collect_less_often() -> None:
    """Collect the youngest generation after 10,000 new objects instead of CPython's default
    (the older generations keep their ratios to it)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(_YOUNG_COLLECTION_EVERY, middle, old)
