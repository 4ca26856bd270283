"""glibc ``malloc`` settings for a process that streams large bodies through Python objects.

Every buffer a 100 MB upload passes through (a decrypted TLS read, the HTTP parser's body chunk, a read
joined from several) is a few hundred kilobytes: above glibc's initial 128 KiB ``mmap`` threshold, and
around the size at which its dynamic threshold and the heap's top trimming hand memory back to the
kernel. Each new buffer then costs fresh pages, so page faults and page zeroing: about a tenth of the
hub's event-loop time during an upload. With fixed thresholds the buffers are recycled within the heap.

The settings are process-wide and only glibc has them; elsewhere, or where the operator has set glibc's
own ``MALLOC_*`` variables or ``GLIBC_TUNABLES``, nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 4 << 20
"""Allocations below this come from the heap; above, each is its own mapping (glibc's maximum is 32 MiB)."""

TRIM_THRESHOLD = 64 << 20
"""Free memory at the top of the heap kept for reuse before it is given back to the kernel."""

OPERATOR_VARIABLES = (
    "GLIBC_TUNABLES",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)


def tune_malloc(*, mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Fix glibc's ``mmap`` and trim thresholds for this process; ``True`` if they were set."""
    if platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in OPERATOR_VARIABLES):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
