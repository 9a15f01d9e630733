"""Freed memory kept for reuse (lmlib.allocator): fewer page faults, and only where it applies."""

import json
import os
import platform
import subprocess
import sys
import types

import pytest

from lmlib import allocator
from lmlib.allocator import KEEP_ENV, MALLOC_ENV, keep_freed_memory, why_not_kept

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# A fresh process imports lmlib (which keeps freed memory where it may), then allocates and
# writes 64 MiB, frees it, and does it again; it prints the page faults of the second time,
# first with malloc itself, then in a PyTorch tensor. glibc's own settings map a block this
# large afresh each time (it is over their 32 MiB ceiling), so every one of its 16,384 pages
# faults again. Kept, malloc's second block is its first one, reused. PyTorch asks for
# 64-byte aligned blocks, which glibc 2.36 carves with a margin that a freed block of the
# same size cannot always give, so the heap first grows by a few blocks, then serves every
# later one from memory already there: the tensor is measured after ten rounds.
REUSE = """
import ctypes, json, resource, torch, lmlib
from lmlib.allocator import why_not_kept

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, (ctypes.c_void_p,)

def faults(write):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    write()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

def with_malloc():
    block = libc.malloc(64 << 20)
    ctypes.memset(block, 1, 64 << 20)
    libc.free(block)

def with_torch():
    torch.empty(16 << 20, dtype=torch.float32).fill_(1.0)

torch.set_num_threads(1)
faults(with_malloc)
malloc = faults(with_malloc)
for _ in range(10):
    faults(with_torch)
tensor = faults(with_torch)
print(json.dumps({"kept": why_not_kept() is None, "reason": why_not_kept(),
                  "malloc": malloc, "tensor": tensor}))
"""
PAGES = (64 << 20) // 4096


def second_write(**env) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in (KEEP_ENV, *MALLOC_ENV, "GLIBC_TUNABLES")}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", REUSE], env={**clean, **env}, check=True,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_importing_lmlib_reuses_freed_memory_without_page_faults():
    kept = second_write()
    assert kept["kept"] and kept["reason"] is None
    assert kept["malloc"] < PAGES // 20 and kept["tensor"] < PAGES // 20, kept  # none, or
    # a few pages of bookkeeping
    default = second_write(**{KEEP_ENV: "0"})
    assert not default["kept"] and default["reason"] == f"{KEEP_ENV}=0"
    assert default["malloc"] > PAGES * 0.9 and default["tensor"] > PAGES * 0.9, default


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_a_malloc_setting_in_the_environment_wins():
    got = second_write(MALLOC_MMAP_THRESHOLD_="65536")
    assert not got["kept"] and "MALLOC_MMAP_THRESHOLD_" in got["reason"]
    assert got["malloc"] > PAGES * 0.9 and got["tensor"] > PAGES * 0.9, got


@pytest.mark.parametrize(
    "env, reason",
    [
        ({KEEP_ENV: "0"}, f"{KEEP_ENV}=0"),
        ({"MALLOC_TRIM_THRESHOLD_": "0"}, "tunes malloc already (MALLOC_TRIM_THRESHOLD_)"),
        ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4096"}, "(GLIBC_TUNABLES)"),
    ],
)
def test_nothing_changes_where_the_reader_has_chosen(monkeypatch, env, reason):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: pytest.fail("mallopt called"))
    assert reason in why_not_kept()
    assert keep_freed_memory() is False


def test_nothing_changes_off_linux(monkeypatch):
    for name in (KEEP_ENV, *MALLOC_ENV, "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: pytest.fail("mallopt called"))
    assert why_not_kept() == "not Linux with glibc"
    assert keep_freed_memory() is False


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_keep_freed_memory_sets_both_thresholds(monkeypatch):
    for name in (KEEP_ENV, *MALLOC_ENV, "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    calls = []

    def mallopt(param, value):
        calls.append((param, value))
        return 1

    libc = types.SimpleNamespace(mallopt=mallopt)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: libc)
    assert keep_freed_memory() is True
    assert sorted(calls) == [(allocator.M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD),
                             (allocator.M_TRIM_THRESHOLD, allocator.TRIM_THRESHOLD)]  # fmt: skip
    assert allocator.MMAP_THRESHOLD > 49152 * 576 * 4  # SmolLM2's embedding gradient
    calls.clear()
    assert keep_freed_memory(1 << 20, 1 << 21) is True
    assert sorted(calls) == [(allocator.M_MMAP_THRESHOLD, 1 << 20),
                             (allocator.M_TRIM_THRESHOLD, 1 << 21)]  # fmt: skip


@pytest.mark.parametrize("limit, error", [(-1, ValueError), (2**31, ValueError),
                                          (1.5, TypeError), (True, TypeError)])  # fmt: skip
def test_bad_threshold_is_refused_before_anything_changes(monkeypatch, limit, error):
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: pytest.fail("mallopt called"))
    rule = "must be an int in \\[0, 2147483647\\]"
    with pytest.raises(error, match=f"mmap_threshold {rule}"):
        keep_freed_memory(limit)
    with pytest.raises(error, match=f"trim_threshold {rule}"):
        keep_freed_memory(trim_threshold=limit)
