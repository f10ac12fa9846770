"""Open a path below a root as if the root were ``/``, in one system call: ``openat2(2)`` with
``RESOLVE_IN_ROOT`` (Linux 5.6+).

The kernel then resolves every component as :class:`nodeagent.host.Host` does one at a time under
``--root``: an absolute link target and a ``..`` past the top stay inside the root, as under
``chroot``. The Host opens its files this way when it can, which spares the ``lstat`` and
``readlink`` its own walk makes for every directory it has not seen yet (a 1024-CPU host has some
2,500 of them, one per cpufreq policy, per core, per VF: bench/inspect).

Python has no binding for ``openat2``, so it is called through ``ctypes`` (imported only here, and
only under a root other than ``/``). Where the call is missing (an older kernel, a seccomp profile
that refuses it, an architecture whose number differs) :func:`in_root_opener` returns None and the
Host keeps its own walk. What the kernel refuses for a reason of its own (a magic link such as
``/proc/PID/exe``, which ``RESOLVE_IN_ROOT`` never follows; a rename racing the lookup) the caller
hands to its walk too: only success, ``ENOENT`` and ``ENOTDIR`` are taken as the answer.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any

RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = 437  # the same on every architecture with the unified syscall table (5.6+)
_ARCHITECTURES = {"x86_64", "aarch64", "ppc64le", "ppc64", "s390x", "riscv64", "loongarch64"}

InRootOpener = Callable[[str, int], int]
"""``opener(path, flags)`` → a file descriptor, or ``OSError`` as ``os.open`` raises it."""


def in_root_opener(root: str) -> InRootOpener | None:
    """An opener of absolute paths under ``root`` (a real directory), or None where the kernel lacks it.

    The opener holds the root's descriptor open for as long as it lives (whoever holds it, a Host or
    a copy of one), and closes it when it is garbage-collected.
    """
    if os.uname().machine not in _ARCHITECTURES:
        return None
    import ctypes  # ~0.2 MiB, a few ms: only a Host under another root pays it

    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    # Declared, the arguments convert without ctypes guessing each one's type: ~0.7 µs a call here.
    syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]

    class OpenHow(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

    hows: dict[int, Any] = {}  # flags → the address of their open_how (kept alive in keep)
    keep: list[Any] = []
    messages: dict[int, str] = {}
    size = ctypes.sizeof(OpenHow)
    get_errno = ctypes.get_errno
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def opener(path: str, flags: int) -> int:
        how = hows.get(flags)
        if how is None:
            keep.append(OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT))
            how = hows[flags] = ctypes.addressof(keep[-1])
        fd: int = syscall(_SYS_OPENAT2, root_fd, path.encode(), how, size)
        if fd < 0:
            err = get_errno()
            message = messages.get(err)
            if message is None:
                message = messages[err] = os.strerror(err)  # slow (locale), and ENOENT is common
            raise OSError(err, message, path)
        return fd

    try:
        os.close(opener("/", os.O_PATH | os.O_DIRECTORY))
    except OSError:  # ENOSYS (kernel < 5.6, or seccomp's answer), EPERM (seccomp), …
        os.close(root_fd)
        return None
    weakref.finalize(opener, os.close, root_fd)
    return opener
