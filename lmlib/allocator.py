"""Where a process gets its memory: freed blocks kept for the next step (Linux, glibc).

A training step allocates the same large buffers every time: its activations, its logits
and, with ``zero_grad(set_to_none=True)`` (PyTorch's default), its gradients. PyTorch asks
the C library's ``malloc`` for each one, and glibc's ``malloc`` treats large blocks apart:

- a block larger than the *mmap threshold* (128 KiB at first, raised as such blocks are
  freed, but never past 32 MiB) gets a mapping of its own from the kernel, and ``free``
  unmaps it at once;
- when the free memory at the top of the heap grows past the *trim threshold*, ``free``
  hands it back to the kernel too.

Either way the next step's block is new memory: the kernel maps and zeroes each 4 KiB page
of it on first touch, one minor page fault per page. SmolLM2's 538 MB of gradients alone
are 131,000 pages, faulted again in every step.

`keep_freed_memory` raises both thresholds to 1 GiB, so that blocks up to that size come
from the heap and go back to it: what one step frees, the next step reuses. ``import
lmlib`` calls it once. ``benchmarks/allocator.py`` measures what it buys; on a 2-core AMD
EPYC, for one SmolLM2 fine-tuning step (batch 4 x 48, AdamW, 2 threads), about 200,000 page
faults a step and 2.0-2.1 s became none and 1.4-1.6 s, with the same peak memory.

The price: memory the process has freed stays with it, for its next use, until it exits (a
block over 1 GiB still goes back at once). The peak does not grow, since the peak is what
the process held at once anyway. It changes nothing where it does not apply or where the
reader has chosen otherwise:

- only on Linux with glibc (not macOS, Windows, or Alpine's musl);
- not when the environment already tunes ``malloc`` (``MALLOC_MMAP_THRESHOLD_``,
  ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_MAX_``, or a
  ``glibc.malloc`` tunable in ``GLIBC_TUNABLES``);
- not when ``LMLIB_KEEP_FREED_MEMORY=0``.

>>> KEEP_LIMIT // 2**20  # MiB: blocks up to this size are kept
1024
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

from lmlib.runtime import check_int

KEEP_ENV = "LMLIB_KEEP_FREED_MEMORY"  # "0" leaves malloc as it is
KEEP_LIMIT = 1 << 30  # bytes: blocks up to 1 GiB are kept for reuse
# glibc's environment variables for the same settings: a reader who set one has chosen
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
              "MALLOC_MMAP_MAX_")  # fmt: skip
# mallopt's parameter numbers, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def why_not_kept() -> str | None:
    """Why `keep_freed_memory` would leave ``malloc`` alone here, or None if it would not."""
    if os.environ.get(KEEP_ENV, "1").strip() == "0":
        return f"{KEEP_ENV}=0"
    chosen = [name for name in MALLOC_ENV if name in os.environ]
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        chosen.append("GLIBC_TUNABLES")
    if chosen:
        return f"the environment tunes malloc already ({', '.join(chosen)})"
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return "not Linux with glibc"
    return None


def keep_freed_memory(limit: int = KEEP_LIMIT) -> bool:
    """Raise glibc's mmap and trim thresholds to ``limit`` bytes; True if they were set.

    Where `why_not_kept` gives a reason, it returns False and changes nothing.
    ``limit`` is a C ``int`` for ``mallopt``: at most 2**31 - 1.
    """
    check_int(limit, "limit", low=0, high=2**31 - 1)
    if why_not_kept() is not None:
        return False
    mallopt = ctypes.CDLL(None).mallopt  # glibc's, already in the process
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success and 0 for a value it refuses (a glibc may cap the mmap
    # threshold: its manual gives 32 MiB, though glibc 2.36 takes 1 GiB)
    trim = mallopt(M_TRIM_THRESHOLD, limit)
    return bool(mallopt(M_MMAP_THRESHOLD, limit)) and bool(trim)
