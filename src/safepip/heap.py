"""How this process's C heap gives memory back to the system.

glibc's malloc serves a large block (an index page's body, its decoded text, a wheel member
read whole) from a mapping of its own, unmapped when freed, until the first such block is
freed: it then raises that threshold to the block's size (up to 32 MiB on 64-bit systems), so
later large blocks come from the heap instead, whose freed space stays with the process. The
index pages of large projects are megabytes each, read by several threads at once: against
PyPI, the peak RSS of a cold web-stack install went from about 151 MB with the moving threshold
to about 117 MB with it fixed at glibc's default. Other C libraries are left as they are."""

from __future__ import annotations

import sys

__all__ = ["fix_mmap_threshold"]

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
