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
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from nodeagent.parse import parse_cpulist
from nodeagent.value import Value, value

log = logging.getLogger(__name__)

_MAX_SYMLINKS = 40


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


@dataclass(eq=False)
class CommandResult:
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


@dataclass(eq=False)
class HostTrace:
    """Every host path a discovery touched, with what it found (``capture`` packs these)."""

    files: dict[str, bytes] = field(default_factory=dict)  # path → content read
    dirs: dict[str, list[str]] = field(default_factory=dict)  # path → entries listed
    probes: set[str] = field(default_factory=set)  # paths tested for existence, type or link

    def all_paths(self) -> set[str]:
        return set(self.files) | set(self.dirs) | self.probes


@dataclass(eq=False)
class HostStats:
    reads: int = 0
    writes: int = 0


@dataclass(eq=False)
class HostRecord:
    """What one run (a discovery, an apply) saw and did through a Host. See the module docstring."""

    warnings: list[HostWarning] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # live-only source → why it was not used
    writes: list[WriteRecord] = field(default_factory=list)  # made, or in dry-run mode would be made
    stats: HostStats = field(default_factory=HostStats)
    trace: HostTrace | None = None  # set to record every path touched (``capture``)
    denied: set[str] = field(default_factory=set)  # present, but this user may not read them (EACCES/EPERM)


@dataclass(eq=False)
class Host:
    """A machine's files seen through a root directory. See the module docstring."""

    root: str = "/"
    dry_run: bool = False
    live: bool | None = None  # None: live exactly when the root is "/"; True: a mounted live host
    write_observers: list[WriteObserver] = field(default_factory=list)
    interceptors: list[Interceptor] = field(default_factory=list)  # tests only
    command_runner: CommandRunner | None = None
    _dir_cache: dict[str, str] = field(default_factory=dict, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def __post_init__(self) -> None:
        if not os.path.isdir(self.root):
            raise HostError(f"--root {self.root!r}: no such directory (give the directory that holds sys/ and proc/)")
        self.root = os.path.realpath(self.root)

    # --- per-run records --------------------------------------------------------------------

    @contextlib.contextmanager
    def recording(self, record: HostRecord | None = None) -> Iterator[HostRecord]:
        """Open a record of this thread's host operations until the block ends; yields it.

        Records nest: every record open on this thread sees each warning, skip, write and count.
        """
        record = HostRecord() if record is None else record
        stack: list[HostRecord] | None = getattr(self._local, "records", None)
        if stack is None:
            stack = self._local.records = []
        stack.append(record)
        try:
            yield record
        finally:
            stack.remove(record)

    def _records(self) -> list[HostRecord]:
        return getattr(self._local, "records", None) or []

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
        return self._resolve(path, follow_last=follow)

    def _resolve(self, path: str, *, follow_last: bool) -> str:
        parts = [p for p in path.split("/") if p and p != "."]
        if not parts:
            return self.root
        # Resolved parent directories are cached: discovery reads many files of the same dirs.
        parent_key = "/" + "/".join(parts[:-1])
        parent = self._dir_cache.get(parent_key)
        if parent is None:
            parent = self._walk("/", parts[:-1], follow_last=True, budget=[_MAX_SYMLINKS])
            self._dir_cache[parent_key] = parent
        resolved = self._walk(parent, parts[-1:], follow_last=follow_last, budget=[_MAX_SYMLINKS])
        return self.root + resolved if resolved != "/" else self.root

    def forget_paths(self) -> None:
        """Drop cached symlink resolutions (after writes, or before a fresh discovery)."""
        self._dir_cache.clear()

    def _walk(self, head: str, parts: list[str], *, follow_last: bool, budget: list[int]) -> str:
        """Resolve ``parts`` below the root-relative ``head``; returns a root-relative path."""
        current = head
        for index, name in enumerate(parts):
            if name == "..":
                current = os.path.dirname(current) or "/"
                continue
            candidate = os.path.join(current, name)
            last = index == len(parts) - 1
            real = self.root + candidate
            if (follow_last or not last) and os.path.islink(real):
                budget[0] -= 1
                if budget[0] < 0:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", candidate)
                target = os.readlink(real)
                base = "/" if target.startswith("/") else current
                current = self._walk(base, [p for p in target.split("/") if p and p != "."],
                                     follow_last=True, budget=budget)
            else:
                current = candidate
        return current

    def host_path(self, fs_path: str) -> str:
        """The inverse of :meth:`fs_path`: a filesystem path below the root as the host sees it."""
        if self.root == "/":
            return fs_path
        rel = os.path.relpath(fs_path, self.root)
        return "/" if rel == "." else "/" + rel

    # --- reading ---------------------------------------------------------------------------

    def read_text(self, path: str) -> str | None:
        """The file's content, or None when it is absent or unreadable (a fact, not an error)."""
        self._count_read()
        try:
            with open(self.fs_path(path), "rb") as handle:
                data = handle.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            # EACCES, EIO, EINVAL (write-only sysfs attributes) … : present but not readable.
            self._note_denied(path, exc)
            log.debug("cannot read %s: %s", path, exc)
            return None
        self._traced("file", path, data)
        return data.decode("utf-8", errors="replace")

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
        self._count_read()
        try:
            with open(self.fs_path(path), "rb") as handle:
                data = handle.read() if limit is None else handle.read(limit)
        except OSError as exc:
            self._note_denied(path, exc)
            return None
        self._traced("file", path, data)
        return data

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
        self._count_read()
        try:
            entries = sorted(os.listdir(self.fs_path(path)))
        except OSError as exc:
            self._note_denied(path, exc)
            return []
        self._traced("dir", path, entries)
        return entries

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
        try:
            real = self.fs_path(path)
        except OSError:
            return None
        if not os.path.lexists(real):
            return None
        return self.host_path(os.path.realpath(real) if self.root == "/" else real)

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
        self._dir_cache.clear()
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
