"""Giving memory back to the system once a large buffer is freed.

glibc's allocator raises its mmap threshold each time a large block is freed, so after one big
request (a 7000x7000 photo decoded, a large body parsed) later blocks of that size come from the
heap and stay in the process when freed: the server's resident size only grows. Fixing the threshold
keeps every block from :data:`MMAP_THRESHOLD_BYTES` up in its own mapping, returned to the system
when freed. Elsewhere (musl, macOS, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20
TRIM_THRESHOLD_BYTES = 8 << 20


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def return_large_blocks() -> bool:
    """Make freed large blocks go back to the system (glibc); True when the allocator was tuned."""
    libc = _libc()
    if libc is None:
        return False
    tuned = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    if not tuned:  # pragma: no cover - a libc that refuses the settings
        log.warning("could not set the allocator's mmap threshold; memory may not be given back")
    return tuned


def trim() -> None:
    """Give the free memory at the top of the heap back now (glibc's ``malloc_trim``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
