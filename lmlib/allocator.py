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

`keep_freed_memory` raises the mmap threshold to 256 MiB and the trim threshold to 1 GiB,
so that blocks up to 256 MiB come from the heap and go back to it, and up to 1 GiB of free
heap is kept: what one step frees, the next step reuses. ``import lmlib`` calls it once.
The sizes fit the book's largest model: SmolLM2's largest block in a training step is the
gradient of its embedding (49,152 x 576 floats, 113 MB), and a step frees all 538 MB of its
gradients at once. Larger blocks, such as the logits of a long batch of prompts, keep a
mapping of their own: kept in the heap, blocks of many sizes would leave holes that only a
block as large could reuse (1 GiB for both thresholds raised Section 6.2's peak memory from
2.25 to 3.30 GiB; 256 MiB from 2.25 to 2.51 GiB).

``benchmarks/allocator.py`` measures what it buys. On a 2-core AMD EPYC virtual machine,
one SmolLM2 fine-tuning step (batch 4 x 48, AdamW, 2 threads) faulted 135,000-205,000
pages. What those faults cost varied from hour to hour: 1.5-2.4 s a step with them,
1.2-1.6 s without them, with the same peak memory (3.4-3.5 GiB).

The price: memory the process has freed stays with it, for its next use, until it exits (a
block over 256 MiB still goes back at once), and holes between kept blocks can raise the
peak a little. It changes nothing where it does not apply or where the reader has chosen
otherwise:

- only on Linux with glibc (not macOS, Windows, or Alpine's musl);
- not when the environment already tunes ``malloc`` (``MALLOC_MMAP_THRESHOLD_``,
  ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_MAX_``, or a
  ``glibc.malloc`` tunable in ``GLIBC_TUNABLES``);
- not when ``LMLIB_KEEP_FREED_MEMORY=0``.

>>> MMAP_THRESHOLD // 2**20, TRIM_THRESHOLD // 2**20  # MiB
(256, 1024)
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

from lmlib.runtime import check_int

KEEP_ENV = "LMLIB_KEEP_FREED_MEMORY"  # "0" leaves malloc as it is
MMAP_THRESHOLD = 256 << 20  # bytes: blocks up to this size come from the heap and go back
TRIM_THRESHOLD = 1 << 30  # bytes: free heap up to this size is kept for the next step
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


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD,
                      trim_threshold: int = TRIM_THRESHOLD) -> bool:  # fmt: skip
    """Set glibc's mmap and trim thresholds (bytes); True if both were set.

    Where `why_not_kept` gives a reason, it returns False and changes nothing. Both are
    C ``int`` values for ``mallopt``: at most 2**31 - 1.
    """
    check_int(mmap_threshold, "mmap_threshold", low=0, high=2**31 - 1)
    check_int(trim_threshold, "trim_threshold", low=0, high=2**31 - 1)
    if why_not_kept() is not None:
        return False
    mallopt = ctypes.CDLL(None).mallopt  # glibc's, already in the process
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success and 0 for a value it refuses (a glibc may cap the mmap
    # threshold: its manual gives 32 MiB, though glibc 2.36 takes more); both are tried
    done = [mallopt(M_MMAP_THRESHOLD, mmap_threshold), mallopt(M_TRIM_THRESHOLD, trim_threshold)]
    return all(done)
