"""Give the C heap's free pages back to the kernel once start-up's one-off work is done.

Start-up (the first inventory, loading the profiles, building the collectors, the first reconcile)
allocates and frees more than the steady state ever holds at once. glibc returns freed memory to
the kernel only from the top of its heap; the free chunks below stay resident until a later
allocation reuses them, which in a daemon that has settled may be never. ``malloc_trim(0)`` hands
those pages back (about 1.2 MiB for ``serve`` on a live host, bench/serve). It is called once,
after the first reconcile step: later steps reuse what the previous one freed, so the steady state
does not grow again.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def release_free_heap() -> bool:
    """``malloc_trim(0)``: True when glibc returned memory; False when it had none to return or the
    C library is not glibc (musl has no ``malloc_trim``)."""
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (ImportError, OSError, AttributeError) as exc:
        log.debug("no malloc_trim: %s", exc)
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))
