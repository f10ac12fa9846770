"""The one seam between nodeagent and the machine it runs on.

Every host path nodeagent reads or writes (``/sys``, ``/proc``, ``/dev``, ``/etc``, ``/boot``,
``/var/lib``, ``/lib/modules``, ``/usr/share``) goes through a :class:`Host`, which prefixes it
with a root (``--root``, like node_exporter's ``--path.sysfs`` or NFD's ``/host-sys``). Tests point
the root at a fixture tree, the DaemonSet at ``/host``.

Because everything passes through here, this is also the one place that

* treats an absent file as a fact (``None``) rather than an exception,
* turns a garbled value into a :class:`HostWarning` naming the file,
* keeps symlinks inside the root (an absolute link target or a ``..`` past the top is resolved
  against the root, as under ``chroot``),
* refuses writes in dry-run mode, tells a write observer (the prep journal) before each write,
  and lets tests stand in for the kernel at the moment of a write (an :data:`Interceptor`: fail it
  with ``EBUSY``, or emulate its reaction, a PCI ``bind`` moving the ``driver`` link),
* decides whether live-only sources (netlink, ioctls, NVML, libvirt, udev) may be used: only when
  the root is ``/``. Under any other root they would describe the wrong machine.

A Host holds no per-run state: what one discovery or one apply saw and did (warnings, live sources
skipped, writes, read/write counts, and optionally a trace of every path) goes into a
:class:`HostRecord` that the run opens with :meth:`Host.recording` and returns. Records nest (an
outer one sees everything the inner ones see) and belong to the thread that opened them, so a
metrics scrape reading ``/proc`` on another thread never lands in a discovery's warnings, and a
long-running daemon has nothing to clear.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import field
from typing import Any

from nodeagent.inroot import InRootOpener, in_root_opener
from nodeagent.lazylog import get_logger
from nodeagent.parse import parse_cpulist
from nodeagent.value import Value, mutable, value

log = get_logger(__name__)

_MAX_SYMLINKS = 40

READ_CAP = 1 << 20
"""Most bytes read from one host file (1 MiB). sysfs attributes are at most a page (4 KiB) and the
procfs and configuration files nodeagent reads are far smaller; a larger file is refused with a
warning naming it, so a huge file inside ``--root`` cannot eat the agent's memory."""

BIG_FILES = {"/proc/cpuinfo": 64 << 20}
"""Files known to grow with the machine, and their caps (``/proc/cpuinfo``: ~1.5 KiB per CPU)."""

_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 16 << 10  # the first read: every sysfs attribute fits, and it stays below malloc's mmap threshold
_SEQ_CHUNK = 2 << 10  # a procfs read this long may be one page of a multi-record seq_file
_BIG_CHUNK = 1 << 20
_ENOUGH_WINDOW = 64 << 10  # read_text_until asks its question within a file's first 64 KiB only


def _clean(path: str) -> str:
    """``path`` without empty or "." components (".." stays: it is resolved after links)."""
    if "//" not in path and "/." not in path and (len(path) == 1 or not path.endswith("/")):
        return path
    parts = [p for p in path.split("/") if p and p != "."]
    return "/" + "/".join(parts)


def _below(head: str, relative: str) -> str:
    """A relative link target taken from the resolved directory ``head``.

    Leading ".." are applied to ``head`` at once (it holds no links, so they are exact, and
    never climb above the root); the rest is left to the resolution.
    """
    parts = [p for p in relative.split("/") if p and p != "."]
    skip = 0
    while skip < len(parts) and parts[skip] == "..":
        head = _parent(head)
        skip += 1
    rest = "/".join(parts[skip:])
    if not rest:
        return head
    return f"{head}/{rest}" if head != "/" else f"/{rest}"


def _parent(head: str) -> str:
    """``os.path.dirname`` of a clean absolute path, without its generality ("/" stays "/")."""
    return head[:head.rfind("/")] or "/"


def _live_realpath(path: str) -> str | None:
    """Where ``path`` of this machine leads, or None when it does not exist.

    An ``O_PATH`` open and its ``/proc/self/fd`` link: three system calls, where ``os.path.realpath``
    takes an ``lstat`` for every component (a NIC's ``device`` link leads some ten deep).
    """
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        fd = -1
    real = None
    if fd >= 0:
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            real = None  # no /proc
        finally:
            os.close(fd)
    if real is None or not real.startswith("/") or real.endswith(" (deleted)"):
        # The library's walk: no /proc, or a dangling link (which it resolves as far as it leads).
        real = os.path.realpath(path) if os.path.lexists(path) else None
    return real


def _is_regular(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def _size(cap: int) -> str:
    return f"{cap >> 20} MiB" if cap >= 1 << 20 else f"{cap >> 10} KiB" if cap >= 1 << 10 else f"{cap} bytes"


class HostError(Exception):
    """A host operation that cannot be done (bad root, write refused, command unavailable)."""


@value
class HostWarning(Value):
    """A host file whose content could not be understood; the fact it held is reported unknown."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@value
class WriteRecord(Value):
    """One write the Host performed (or, in dry-run mode, would have performed)."""

    path: str
    value: str | None  # None: the file was removed
    kind: str = "write"  # "write" (attribute), "file" (whole file, atomic), "remove", "run"


@mutable
class CommandResult:
    """What a host command (:meth:`Host.run`) returned."""

    argv: list[str]
    returncode: int
    stdout: str = ""
    stderr: str = ""


WriteObserver = Callable[[WriteRecord], None]
"""Called before every real write; the prep journal uses it to persist the old value first."""

Interceptor = Callable[["Host", WriteRecord], object]
"""Tests: stands in for the kernel at the moment of a write, a file replace, a removal or a command.

Called after dry-run, observers and bookkeeping, exactly where the system call would happen. It may
raise ``OSError`` (the kernel refusing the write: ``EBUSY`` on ``nr_hugepages``), return ``True``
(it emulated the write and its side effects; the real one is skipped), return a
:class:`CommandResult` for a ``run`` record (the command's outcome), or return None or False to let
the write through. The interceptor installed last sees the write first, as an outer wrapper would.
"""

CommandRunner = Callable[[Sequence[str]], CommandResult]


class _ThreadState(threading.local):
    """One thread's state of a Host, read with one attribute lookup each (the defaults are class
    attributes, so a thread that never set one does not pay for a missing attribute)."""

    records: list[HostRecord] | tuple[()] = ()  # the records open on this thread, outermost first
    memo: dict[Any, Any] | None = None  # the open snapshot's reads (Host.snapshot)


@mutable
class HostTrace:
    """Every host path a discovery touched, with what it found (``capture`` packs these)."""

    files: dict[str, bytes] = field(default_factory=dict)  # path → content read
    dirs: dict[str, list[str]] = field(default_factory=dict)  # path → entries listed
    probes: set[str] = field(default_factory=set)  # paths tested for existence, type or link


@mutable
class HostStats:
    """How many host files and listings a run read, and how many writes it made."""

    reads: int = 0
    writes: int = 0


@mutable
class HostRecord:
    """What one run (a discovery, an apply) saw and did through a Host. See the module docstring."""

    warnings: list[HostWarning] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # live-only source → why it was not used
    writes: list[WriteRecord] = field(default_factory=list)  # made, or in dry-run mode would be made
    stats: HostStats = field(default_factory=HostStats)
    trace: HostTrace | None = None  # set to record every path touched (``capture``)
    denied: set[str] = field(default_factory=set)  # present, but this user may not read them (EACCES/EPERM)


@mutable
class Host:
    """A machine's files seen through a root directory. See the module docstring."""

    root: str = "/"
    dry_run: bool = False
    live: bool | None = None  # None: live exactly when the root is "/"; True: a mounted live host
    write_observers: list[WriteObserver] = field(default_factory=list)
    interceptors: list[Interceptor] = field(default_factory=list)  # tests only
    command_runner: CommandRunner | None = None
    _dir_cache: dict[str, str] = field(default_factory=dict, repr=False)  # host path → root-relative
    _real_dirs: dict[str, str] = field(default_factory=dict, repr=False)  # host dir → real dir + "/"
    _in_root: InRootOpener | bool | None = field(default=None, init=False, repr=False)  # None: not asked; False: none
    _local: _ThreadState = field(default_factory=_ThreadState, repr=False)

    def __post_init__(self) -> None:
        if not os.path.isdir(self.root):
            raise HostError(f"--root {self.root!r}: no such directory (give the directory that holds sys/ and proc/)")
        self.root = os.path.realpath(self.root)

    def check_tree(self) -> None:
        """Refuse a root that holds neither ``sys/`` nor ``proc/``: an empty or wrong ``--root``.

        Discovery under it would find nothing and report an empty node with no warnings.
        """
        if not (self.is_dir("/sys") or self.is_dir("/proc")):
            raise HostError(f"--root {self.root!r} holds neither sys/ nor proc/: not the root of a host "
                            "(give the directory that holds the host's sys/ and proc/, e.g. /host)")

    # --- per-run records --------------------------------------------------------------------

    @contextlib.contextmanager
    def recording(self, record: HostRecord | None = None) -> Iterator[HostRecord]:
        """Open a record of this thread's host operations until the block ends; yields it.

        Records nest: every record open on this thread sees each warning, skip, write and count.
        """
        record = HostRecord() if record is None else record
        local = self._local
        stack = local.records
        if not stack:
            stack = local.records = [record]
        else:
            stack.append(record)  # type: ignore[union-attr]
        try:
            yield record
        finally:
            stack.remove(record)  # type: ignore[union-attr]

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Within the block, on this thread, each host file is read from the kernel once.

        A later read of a path already read returns the first read's bytes, and a later listing
        of a directory the first listing: a discovery and the plan made from it see one consistent
        host, and the plan does not read again what discovery read (the kubelet's configuration,
        ``/proc``). Only what was read is kept, not absences or refusals. A fresh discovery
        (:meth:`forget_paths`) empties it, and a write or a command through the Host (not a dry
        run's) ends it on this thread until the block ends: once nodeagent changes the host, every
        read goes to the kernel (an allocation read back, a poll). Blocks nest (the outer one's
        reads are kept).
        """
        outer = self._local.memo
        # (path, cap, refuse_over) → bytes for files, path → entries for directories
        self._local.memo = {} if outer is None else outer
        try:
            yield
        finally:
            self._local.memo = outer

    def _end_snapshot(self) -> None:
        """The host is being changed: this thread's reads go to the kernel until its snapshot ends."""
        if self._local.memo is not None:
            self._local.memo = None

    def _records(self) -> list[HostRecord] | tuple[()]:
        return self._local.records

    def _count_read(self) -> None:
        for record in self._records():
            record.stats.reads += 1

    def _traced(self, kind: str, path: str, payload: object = None) -> None:
        for record in self._records():
            trace = record.trace
            if trace is None:
                continue
            if kind == "file":
                trace.files[path] = payload  # type: ignore[assignment]
            elif kind == "dir":
                trace.dirs[path] = payload  # type: ignore[assignment]
            else:
                trace.probes.add(path)

    # --- where things are ------------------------------------------------------------------

    @property
    def is_live(self) -> bool:
        """Whether live-only sources may be used: the root is this machine's own ``/``.

        ``live=True`` says that another root is this very machine's ``/`` mounted elsewhere (a
        DaemonSet's ``/host`` with the host's PID namespace), so the KVM ioctl, netlink, NVML and
        libvirt describe the same machine as the files do.
        """
        return self.root == "/" if self.live is None else self.live

    def live_source(self, source: str) -> bool:
        """Whether a live-only source (netlink, ioctl, NVML, libvirt, udev) may be used here.

        Under another root the source is recorded in the open records' ``skipped`` with the reason.
        """
        if self.is_live:
            return True
        self.skip(source, f"live-only source, not used under --root {self.root}")
        return False

    def skip(self, source: str, reason: str) -> None:
        """Record that a source was not used, and why (the Inventory's ``skipped``)."""
        for record in self._records():
            record.skipped[source] = reason

    def fs_path(self, path: str, *, follow: bool = True) -> str:
        """The real filesystem path of a host path, with every symlink kept inside the root."""
        if not path.startswith("/"):
            raise HostError(f"host paths are absolute, got {path!r}")
        if self.root == "/":
            return os.path.normpath(path)
        clean = _clean(path)
        if follow:
            return self._real(self._dir(clean, [_MAX_SYMLINKS]))
        return self._real(self._resolve(clean, False, [_MAX_SYMLINKS]))

    def forget_paths(self) -> None:
        """Drop cached symlink resolutions and this thread's :meth:`snapshot` reads (after writes,
        or before a fresh discovery)."""
        self._dir_cache.clear()
        self._real_dirs.clear()
        memo = self._local.memo
        if memo:
            memo.clear()

    # Resolution under a root other than "/" follows links as ``chroot`` would, one component at
    # a time, and caches every directory (and followed path) it resolves: a new one costs one
    # ``lstat`` below its deepest cached ancestor (one ``readlink`` more when it is a link), not a
    # walk from the root.
    # Paths here are root-relative, absolute and clean (no empty or "." components; ".." kept,
    # because ".." after a link is taken from where the link leads).

    def _real(self, resolved: str) -> str:
        return self.root + resolved if resolved != "/" else self.root

    def _resolve(self, path: str, follow_last: bool, budget: list[int]) -> str:
        """The root-relative path ``path`` leads to (its last component followed if ``follow_last``)."""
        if path == "/":
            return "/"
        cut = path.rfind("/")
        parent = path[:cut] or "/"
        head = self._dir_cache.get(parent)
        if head is None:
            head = self._dir(parent, budget)
        return self._step(head, path[cut + 1:], follow_last, budget)

    def _dir(self, path: str, budget: list[int]) -> str:
        """``_resolve`` with the last component followed (a directory, or any followed path), cached.

        A path whose parent is not resolved yet either (``/sys/class/net/X``, whose link leads five
        new directories deep) is asked of the kernel first: three system calls at any depth, where
        the walk takes one or two per new component.
        """
        resolved = self._dir_cache.get(path)
        if resolved is None:
            cut = path.rfind("/")
            if cut > 0 and path[:cut] not in self._dir_cache and "/.." not in path:
                try:
                    resolved = self._resolved_by_kernel(path)  # cached by it
                except OSError:
                    resolved = None  # absent: the walk answers as it always has
            if resolved is None:
                resolved = self._resolve(path, True, budget)
                self._dir_cache[path] = resolved
        return resolved

    def _step(self, head: str, name: str, follow: bool, budget: list[int]) -> str:
        """One component below the resolved directory ``head``."""
        if name == "..":
            return _parent(head)
        candidate = f"{head}/{name}" if head != "/" else f"/{name}"
        real = self.root + candidate
        if not follow or not os.path.islink(real):
            return candidate
        budget[0] -= 1
        if budget[0] < 0:
            raise OSError(errno.ELOOP, "too many levels of symbolic links (a symlink loop)", candidate)
        target = os.readlink(real)
        if target.startswith("/"):
            return self._dir(_clean(target), budget)  # a path of the described host
        return self._dir(_below(head, target), budget)

    def host_path(self, fs_path: str) -> str:
        """The inverse of :meth:`fs_path`: a filesystem path below the root as the host sees it."""
        if self.root == "/":
            return fs_path
        rel = os.path.relpath(fs_path, self.root)
        return "/" if rel == "." else "/" + rel

    # --- reading ---------------------------------------------------------------------------

    def read_text(self, path: str) -> str | None:
        """The file's content, or None when it is absent or unreadable (a fact, not an error)."""
        data = self._read(path, BIG_FILES.get(path, READ_CAP), refuse_over=True)
        return None if data is None else data.decode("utf-8", errors="replace")

    def _note_denied(self, path: str, exc: OSError) -> None:
        """Remember a file this user may not read: "not readable by this user" is not "absent"."""
        if exc.errno in (errno.EACCES, errno.EPERM):
            self.note_denied(path)

    def note_denied(self, path: str) -> None:
        """Record in every open record that ``path`` is present but not readable by this user."""
        for record in self._records():
            record.denied.add(path)

    def is_denied(self, path: str) -> bool:
        """Whether ``path`` (or a directory above it) was refused to this user in the open records."""
        return any(path in r.denied or any(path.startswith(d + "/") for d in r.denied) for r in self._records())

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        """The file's bytes (the first ``limit`` of them when given), or None as :meth:`read_text`."""
        if limit is None:
            return self._read(path, BIG_FILES.get(path, READ_CAP), refuse_over=True)
        return self._read(path, limit, refuse_over=False)

    def read_text_until(self, path: str, enough: Callable[[bytes], bool]) -> str | None:
        """The file's text up to the first read after which ``enough(what was read)`` is true; all
        of it (as :meth:`read_text`) when that never happens. One open, whatever the answer.
        ``enough`` is asked within the file's first 64 KiB only, so that a long file is not joined
        again at every read.

        For procfs files built a record at a time as they are read (/proc/cpuinfo): stopping
        early spares the kernel generating the rest.
        """
        cap = BIG_FILES.get(path, READ_CAP)
        memo = self._local.memo
        data = memo.get((path, cap, True)) if memo is not None else None
        if data is None:
            data = self._read_file(path, cap, refuse_over=True, enough=enough)
            if memo is not None and data is not None and not enough(data):
                memo[(path, cap, True)] = data  # the whole file: a later read_text may have it
        return None if data is None else data.decode("utf-8", errors="replace")

    def _read(self, path: str, cap: int, *, refuse_over: bool) -> bytes | None:
        memo = self._local.memo
        if memo is None:
            return self._read_file(path, cap, refuse_over=refuse_over)
        key = (path, cap, refuse_over)
        data = memo.get(key)
        if data is None:
            data = self._read_file(path, cap, refuse_over=refuse_over)
            if data is not None:
                memo[key] = data
        return data

    def _read_file(self, path: str, cap: int, *, refuse_over: bool,
                   enough: Callable[[bytes], bool] | None = None) -> bytes | None:
        """``open``/``read``/``close``: three system calls for an attribute whose directory is known.

        Opened non-blocking so that a FIFO or a device cannot hang discovery; a read that comes back
        empty, would block or fills the cap is checked with ``fstat`` and refused (with a warning)
        unless the file is regular. More than ``cap`` bytes: refused when ``refuse_over``, else cut.
        ``enough``: stop after the first read that makes it true (:meth:`read_text_until`).
        """
        local = self._local
        records = local.records
        for record in records:
            record.stats.reads += 1
        try:
            fd = self._open_read(path)
        except OSError as exc:
            self._unreadable(path, exc)
            return None
        try:
            first = os.read(fd, _CHUNK if cap >= _CHUNK else cap + 1)
            size = len(first)
            data: bytes | None
            # A short read is the whole file: a regular file's or a sysfs attribute's (kernfs returns
            # it in one read). procfs multi-record files (cpuinfo) come a page at a time: read on.
            if enough is not None and size and enough(first):
                data = first
            elif not size or size >= _CHUNK or size > cap or (size >= _SEQ_CHUNK and path.startswith("/proc/")):
                data = self._read_rest(fd, path, cap, refuse_over, first, enough=enough)
            else:
                data = first
        except BlockingIOError:  # a FIFO with a writer, a terminal: never a regular file
            self._refuse(fd, path, cap)
            return None
        except OSError as exc:
            self._unreadable(path, exc)
            return None
        finally:
            os.close(fd)
        if records and data is not None:
            for record in records:
                trace = record.trace
                if trace is not None:
                    trace.files[path] = data
        return data

    def _open_read(self, path: str) -> int:
        """A descriptor of ``path`` for reading, opened inside the root (``OSError`` as ``os.open``).

        Under another root, in order: a directory the walk resolved (an absolute open that does not
        follow a last-component link), the kernel's in-root open from the root, the walk.
        """
        if self.root == "/":
            if not path.startswith("/"):
                raise HostError(f"host paths are absolute, got {path!r}")
            return os.open(path, _READ_FLAGS)
        cut = path.rfind("/")
        parent = path[:cut]
        real_dir = self._real_dirs.get(parent) if cut >= 0 else None  # keys are "" or absolute
        plain = "//" not in path and "/." not in path
        if real_dir is None and cut > 0:
            head = self._dir_cache.get(parent)  # a directory the walk resolved (a probe, a listing)
            if head is not None:
                real_dir = self._real_dirs[parent] = self._real(head) + "/"
        if real_dir is not None and plain:
            try:
                # O_NOFOLLOW: a link as the last component fails (ELOOP) instead of being followed
                # outside the root; only then is it resolved, the chroot way.
                return os.open(real_dir + path[cut + 1:], _READ_FLAGS | os.O_NOFOLLOW)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
        elif plain and cut >= 0 and path[0] == "/" and path[-1] != "/":
            fd = self._open_in_root(path, _READ_FLAGS)
            if fd is not None:
                return fd
        return self._open_read_slow(path)

    def _open_in_root(self, path: str, flags: int) -> int | None:
        """``path`` (absolute and clean) opened by the kernel inside the root (nodeagent.inroot).

        None when that is not possible here, or when the kernel refused for a reason the walk must
        judge (a loop, a magic link, a permission): the caller then walks. A missing file is final.
        """
        opener = self._in_root
        if opener is None:
            opener = self._in_root = in_root_opener(self.root) or False
        if opener is False:
            return None
        try:
            return opener(path, flags)  # type: ignore[operator]
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise
        return None

    def _open_read_slow(self, path: str) -> int:
        if not path.startswith("/"):
            raise HostError(f"host paths are absolute, got {path!r}")
        clean = _clean(path)
        cut = clean.rfind("/")
        name = clean[cut + 1:]
        if not name or name == "..":
            return os.open(self.fs_path(clean), _READ_FLAGS)
        parent = clean[:cut]
        budget = [_MAX_SYMLINKS]
        head = self._dir(parent or "/", budget)
        real_dir = self._real(head)
        if real_dir != "/":
            real_dir += "/"
        self._real_dirs[parent] = real_dir
        try:
            return os.open(real_dir + name, _READ_FLAGS | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
        return os.open(self._real(self._step(head, name, True, budget)), _READ_FLAGS | os.O_NOFOLLOW)

    def _read_rest(self, fd: int, path: str, cap: int, refuse_over: bool, data: bytes, *,
                   enough: Callable[[bytes], bool] | None = None) -> bytes | None:
        """The slow end of :meth:`_read`: an empty first read, a long file, a cut or a refusal."""
        if not data and not _is_regular(fd):
            self._refuse(fd, path, cap)
            return None
        if len(data) >= _CHUNK or (len(data) >= _SEQ_CHUNK and path.startswith("/proc/")):
            chunks, total = [data], len(data)
            while total <= cap:
                chunk = os.read(fd, min(cap + 1 - total, _BIG_CHUNK))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if enough is not None and total <= _ENOUGH_WINDOW and enough(b"".join(chunks)):
                    break
            data = b"".join(chunks)
        if len(data) <= cap:
            return data
        if not refuse_over:
            return data[:cap]
        self._refuse(fd, path, cap)
        return None

    def _refuse(self, fd: int, path: str, cap: int) -> None:
        """Warn about a file nodeagent will not read: not a regular file, or larger than its cap."""
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            mode = stat.S_IFREG
        if stat.S_ISREG(mode):
            self.warn(path, f"larger than the {_size(cap)} read cap for this file; ignored")
        else:
            self.warn(path, f"not a regular file ({_kind(mode)}); ignored")

    def _unreadable(self, path: str, exc: OSError) -> None:
        """A file that could not be opened or read: absent is silent; a loop or a socket is a warning."""
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
            return
        if exc.errno == errno.ELOOP:
            self.warn(path, "symlink loop (too many levels of symbolic links); ignored")
        elif exc.errno == errno.ENXIO:
            self.warn(path, "not a regular file (a socket or a device without a reader); ignored")
        else:
            # EACCES, EIO, EINVAL (write-only sysfs attributes) … : present but not readable.
            self._note_denied(path, exc)
            log.debug("cannot read %s: %s", path, exc)

    def read_str(self, path: str) -> str | None:
        """The stripped first-line-and-rest content of a one-value attribute, or None."""
        text = self.read_text(path)
        return None if text is None else text.strip()

    def read_int(self, path: str, *, base: int = 10) -> int | None:
        """An integer attribute; None when absent, and a warning naming the file when garbled."""
        text = self.read_text(path)
        if text is None:
            return None
        value = text.strip()
        try:
            return int(value, base)
        except ValueError:
            self.warn(path, f"expected an integer, found {value[:40]!r}; reported as unknown")
            return None

    def read_cpulist(self, path: str) -> list[int] | None:
        """A cpulist attribute (``0-3,8``); None when absent, a warning when garbled."""
        text = self.read_text(path)
        if text is None:
            return None
        try:
            return parse_cpulist(text)
        except ValueError as exc:
            self.warn(path, f"{exc}; reported as unknown")
            return None

    def warn(self, path: str, message: str) -> None:
        """Report a host file that could not be understood (logged once per open record)."""
        warning = HostWarning(path, message)
        records = self._records()
        fresh = not records
        for record in records:
            if warning not in record.warnings:
                record.warnings.append(warning)
                fresh = True
        if fresh:
            log.warning("%s", warning)

    def _probe(self, path: str, test: Callable[[str], bool]) -> bool:
        """One probe of a host path (traced); any error resolving or testing it reads as False."""
        self._traced("probe", path)
        try:
            return test(self.fs_path(path))
        except OSError:
            return False

    def exists(self, path: str) -> bool:
        """Whether anything (a dangling link included) is at ``path``."""
        return self._probe(path, os.path.lexists)

    def is_dir(self, path: str) -> bool:
        return self._probe(path, os.path.isdir)

    def is_char_device(self, path: str) -> bool:
        return self._probe(path, lambda real: stat.S_ISCHR(os.stat(real).st_mode))

    def access(self, path: str, mode: int = os.R_OK | os.W_OK) -> bool:
        return self._probe(path, lambda real: os.access(real, mode))

    def listdir(self, path: str) -> list[str]:
        """Sorted entries of a directory; empty when it is absent."""
        memo = self._local.memo
        if memo is not None:
            listed = memo.get(path)
            if listed is not None:
                return list(listed)
        self._count_read()
        try:
            entries = sorted(self._list(path))
        except OSError as exc:
            self._note_denied(path, exc)
            return []
        self._traced("dir", path, entries)
        if memo is not None:
            memo[path] = tuple(entries)
        return entries

    def _list(self, path: str) -> list[str]:
        if self.root != "/" and path[:1] == "/" and "//" not in path and "/." not in path \
                and (path == "/" or path[-1] != "/"):
            fd = self._open_in_root(path, os.O_RDONLY | os.O_DIRECTORY)
            if fd is not None:
                try:
                    return os.listdir(fd)
                finally:
                    os.close(fd)
        return os.listdir(self.fs_path(path))

    def readlink(self, path: str) -> str | None:
        """The raw target of a symlink, or None when ``path`` is not one."""
        self._traced("probe", path)
        try:
            return os.readlink(self.fs_path(path, follow=False))
        except OSError:
            return None

    def realpath(self, path: str) -> str | None:
        """The host path ``path`` resolves to, inside the root; None when it does not exist."""
        self._traced("probe", path)
        if self.root == "/":
            return _live_realpath(self.fs_path(path))
        if not path.startswith("/"):
            raise HostError(f"host paths are absolute, got {path!r}")
        clean = _clean(path)
        resolved = self._dir_cache.get(clean)
        if resolved is None:
            try:
                resolved = self._resolved_by_kernel(clean)
            except OSError:
                return None  # absent (a dangling link included)
            if resolved is not None:
                return resolved  # the kernel opened it: it exists
        if resolved is None:
            try:
                resolved = self._dir(clean, [_MAX_SYMLINKS])  # already the host path fs_path would give
            except OSError:
                return None
        return resolved if os.path.lexists(self._real(resolved)) else None

    def _resolved_by_kernel(self, clean: str) -> str | None:
        """Where ``clean`` leads inside the root, as the kernel resolves it (nodeagent.inroot), cached.

        ``O_PATH`` open and the descriptor's ``/proc/self/fd`` link: three system calls whatever
        the depth, where the walk takes an ``lstat`` for each new component and a ``readlink`` for
        each link (a NIC's ``device`` is two links and five directories deep). None when the
        kernel cannot say (no openat2, no /proc, a path it names outside the root): walk then.
        """
        fd = self._open_in_root(clean, os.O_PATH)
        if fd is None:
            return None
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        finally:
            os.close(fd)
        if real == self.root:
            resolved = "/"
        elif real.startswith(self.root + "/") and not real.endswith(" (deleted)"):
            resolved = real[len(self.root):]
        else:
            return None
        self._dir_cache[clean] = resolved
        self._dir_cache.setdefault(resolved, resolved)  # the kernel's path holds no links: the walk finds it as is
        return resolved

    def link_name(self, path: str) -> str | None:
        """The last component of a symlink's target (a ``driver`` link → ``vfio-pci``)."""
        target = self.readlink(path)
        return os.path.basename(target.rstrip("/")) if target else None

    # --- writing ---------------------------------------------------------------------------

    def _before_write(self, record: WriteRecord) -> bool:
        """Dry-run, observers, bookkeeping, interceptors. Returns True when the write is fully handled."""
        records = self._records()
        for open_record in records:
            open_record.writes.append(record)
        if self.dry_run:
            return True
        for observer in self.write_observers:
            observer(record)
        for open_record in records:
            open_record.stats.writes += 1
        self.forget_paths()
        self._end_snapshot()
        return self._intercept(record) is True

    def _intercept(self, record: WriteRecord) -> object:
        """The first interceptor's answer that is not None (the last installed is asked first)."""
        for interceptor in reversed(self.interceptors):
            answer = interceptor(self, record)
            if answer is not None and answer is not False:
                return answer
        return None

    def write(self, path: str, value: str) -> None:
        """Write a kernel attribute (sysfs/procfs) in a single ``write(2)``, as ``echo N > file`` does.

        ``O_TRUNC`` as the shell uses it: kernfs ignores it, and a fixture's regular file needs it.

        Errors the kernel returns (EBUSY, EINVAL, …) surface as ``OSError``.
        """
        record = WriteRecord(path, value, "write")
        if self._before_write(record):
            return
        fd = os.open(self.fs_path(path), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def write_file(self, path: str, content: str, mode: int = 0o644) -> None:
        """Replace a regular file atomically: temp file in the same directory, fsync, rename."""
        record = WriteRecord(path, content, "file")
        if self._before_write(record):
            return
        self.atomic_write(path, content, mode)

    def atomic_write(self, path: str, content: str, mode: int = 0o644) -> None:
        """The atomic replace itself, without hooks (the journal uses it for its own file)."""
        import tempfile  # writes are rare; reads must not pay for the import

        self._end_snapshot()
        target = self.fs_path(path)
        directory = os.path.dirname(target)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".nodeagent-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def remove(self, path: str) -> None:
        """Remove a file nodeagent created (revert of a drop-in); absent is fine."""
        record = WriteRecord(path, None, "remove")
        if self._before_write(record):
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.fs_path(path, follow=False))

    def run(self, argv: Sequence[str]) -> CommandResult:
        """Run a host command (``update-grub``, ``modprobe vfio-pci``).

        Only on the live host, or through a test's :attr:`command_runner`: under a fixture root a
        real ``modprobe`` would change this machine, not the one the root describes. On a live host
        mounted at another root (a DaemonSet's ``/host``) the command runs ``chroot``-ed into it, so
        that it finds the host's own binaries, ``/lib/modules`` and ``/boot``.
        """
        record = WriteRecord(" ".join(argv), None, "run")
        for open_record in self._records():
            open_record.writes.append(record)
        if self.dry_run:
            return CommandResult(list(argv), 0)
        self._end_snapshot()  # update-grub, modprobe: files change behind the Host
        answer = self._intercept(record)
        if isinstance(answer, CommandResult):
            return answer
        if self.command_runner is not None:
            return self.command_runner(argv)
        if not self.is_live:
            raise HostError(f"not running {argv[0]!r}: commands run only on the live host (--root /)")
        import subprocess

        command = list(argv) if self.root == "/" else ["chroot", self.root, *argv]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        except FileNotFoundError:
            return CommandResult(list(argv), 127, "", f"{argv[0]}: command not found")
        return CommandResult(list(argv), done.returncode, done.stdout, done.stderr)

    def which(self, name: str) -> str | None:
        """A command's host path under the usual sbin/bin directories, if present."""
        for directory in ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"):
            candidate = f"{directory}/{name}"
            if self.access(candidate, os.X_OK) and not self.is_dir(candidate):
                return candidate
        return None

    # --- locking and live-only access ------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, path: str) -> Iterator[None]:
        """An exclusive, non-blocking lock file (two applies must never run at once)."""
        target = self.fs_path(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise HostError(f"{path} is locked: another nodeagent apply/revert is running") from exc
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            os.close(fd)

    def ioctl(self, path: str, request: int, arg: int = 0) -> int:
        """An ioctl on a live device file (``KVM_GET_API_VERSION`` on ``/dev/kvm``)."""
        if not self.is_live:
            raise HostError("ioctls are live-only")
        fd = os.open(self.fs_path(path), os.O_RDWR | os.O_CLOEXEC)
        try:
            return fcntl.ioctl(fd, request, arg)
        finally:
            os.close(fd)
