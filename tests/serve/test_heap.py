"""nodeagent/daemon/heap.py: start-up's freed C heap handed back with glibc's malloc_trim."""

from __future__ import annotations

import platform

from nodeagent.daemon.heap import release_free_heap


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_freed_heap_chunks_below_the_top_go_back_to_the_kernel() -> None:
    release_free_heap()  # start from a heap without free pages to return
    # 64 KiB blocks come from the heap (glibc's mmap threshold is 128 KiB); the last one stays
    # allocated, so the freed ones are below the top of the heap, where free() alone keeps them.
    blocks = [bytearray(b"x" * (64 * 1024)) for _ in range(512)]
    keep = blocks.pop()
    blocks.clear()
    before = _rss_kib()
    released = release_free_heap()
    after = _rss_kib()
    if platform.libc_ver()[0] == "glibc":
        assert released is True
        assert before - after > 16 * 1024, (before, after)  # most of the 32 MiB freed
    else:  # musl has no malloc_trim: nothing to do, and no error
        assert released is False
    assert keep[0] == ord("x")
