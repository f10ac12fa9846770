"""``capture``: pack exactly the host files discovery read, so ``--root`` reproduces the inventory.

Discovery runs once with the Host's trace on. Every path it read, listed or probed is then packed:
files with the bytes discovery saw (so the capture and the inventory agree even for counters that
move), directories, and every symlink met on the way, with its target unchanged (sysfs links are
relative, so they keep working below any root). Character devices become empty files, the stand-in
fixture trees use. Nothing secret goes in: no ``/proc/<pid>``, no credentials or keys, and the
credential values inside the files that are packed (``*password*=``-style boot arguments, the
kubelet config's auth fields) are redacted by :mod:`nodeagent.redact`; the manifest lists them.

A few facts can only be had live (the KVM ioctl, the kubelet process); they are listed in
:data:`LIVE_ONLY_FIELDS` and written to the capture's manifest for the reader, not to the tree.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import tarfile
import time
from dataclasses import dataclass, field

from nodeagent import __version__
from nodeagent.discover import discover
from nodeagent.host import Host, HostRecord, HostTrace
from nodeagent.inventory import Inventory
from nodeagent.redact import redact_file

MANIFEST = "NODEAGENT-CAPTURE.json"

# Inventory fields that a capture cannot carry: they come from live-only sources or from processes.
LIVE_ONLY_FIELDS = (
    "root", "skipped",
    "kvm.device", "kvm.api_version", "kvm.max_vcpus", "kvm.recommended_vcpus",
    "kubelet.running", "kubelet.started_at",
)

_SECRET = (
    re.compile(r"^/proc/(\d+|self|thread-self)(/|$)"),
    re.compile(r"(^|/)(pki|secrets?|\.ssh|credentials)(/|$)"),
    re.compile(r"^/etc/(shadow|gshadow|sudoers)"),
    re.compile(r"\.(key|pem|crt|kubeconfig)$|(^|/)kubeconfig$|(^|/)kubelet\.conf$"),
)


def is_secret(path: str) -> bool:
    return any(pattern.search(path) for pattern in _SECRET)


@dataclass
class CaptureSummary:
    files: int
    links: int
    dirs: int
    inventory: Inventory
    redacted: dict[str, list[str]] = field(default_factory=dict)  # path → names whose values were redacted


@dataclass
class _Tree:
    """The entries of the capture, keyed by host path: ("dir"|"file"|"link", payload)."""

    host: Host
    entries: dict[str, tuple[str, bytes | str | None]] = field(default_factory=dict)

    def real(self, path: str) -> str:
        return os.path.join(self.host.root, path.lstrip("/"))

    def resolve(self, path: str, *, follow_last: bool = True, depth: int = 0) -> str | None:
        """Record every directory and symlink on the way to ``path``; return where it lands."""
        if depth > 40 or is_secret(path):
            return None
        parts = [p for p in path.split("/") if p and p != "."]
        current = "/"
        for index, name in enumerate(parts):
            if name == "..":
                current = os.path.dirname(current) or "/"
                continue
            candidate = os.path.join(current, name)
            if is_secret(candidate):
                return None
            try:
                mode = os.lstat(self.real(candidate)).st_mode
            except OSError:
                return None
            last = index == len(parts) - 1
            if stat.S_ISLNK(mode):
                target = os.readlink(self.real(candidate))
                self.entries[candidate] = ("link", target)
                if last and not follow_last:
                    return candidate
                base = "/" if target.startswith("/") else current
                rest = "/".join(parts[index + 1 :])
                joined = os.path.normpath(os.path.join(base, target, rest)) if rest else os.path.normpath(
                    os.path.join(base, target))
                return self.resolve(joined if joined.startswith("/") else "/" + joined, depth=depth + 1)
            if stat.S_ISDIR(mode):
                self.entries.setdefault(candidate, ("dir", None))
            current = candidate
        return current

    def add_file(self, path: str, data: bytes) -> None:
        landed = self.resolve(path)
        if landed is not None:
            self.entries[landed] = ("file", data)

    def add_listing(self, path: str, names: list[str]) -> None:
        landed = self.resolve(path)
        if landed is None or landed == "/proc":
            return  # /proc's entries are processes: never packed
        for name in names:
            child = os.path.join(landed, name)
            try:
                mode = os.lstat(self.real(child)).st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode) or stat.S_ISDIR(mode):
                self.resolve(child)

    def add_probe(self, path: str) -> None:
        landed = self.resolve(path, follow_last=False)
        if landed is None or landed in self.entries:
            return
        try:
            mode = os.lstat(self.real(landed)).st_mode
        except OSError:
            return
        if stat.S_ISDIR(mode):
            self.entries[landed] = ("dir", None)
        else:
            # Character devices (/dev/kvm) and files only tested for existence: an empty stand-in.
            self.entries[landed] = ("file", b"")


def build_tree(host: Host, trace: HostTrace,
               redactions: dict[str, list[str]] | None = None) -> dict[str, tuple[str, bytes | str | None]]:
    """The capture's entries; the names redacted in each file go to ``redactions`` (path → names)."""
    tree = _Tree(host)
    for path, data in trace.files.items():
        if not is_secret(path):
            packed, names = redact_file(path, data)
            if names and redactions is not None:
                redactions[path] = names
            tree.add_file(path, packed)
    for path, names in trace.dirs.items():
        if not is_secret(path):
            tree.add_listing(path, names)
    for path in sorted(trace.probes):
        if not is_secret(path):
            tree.add_probe(path)
    return tree.entries


def _manifest(inventory: Inventory, redactions: dict[str, list[str]]) -> bytes:
    live = {name: _field(inventory, name) for name in LIVE_ONLY_FIELDS if name not in ("root", "skipped")}
    return json.dumps({
        "nodeagent_version": __version__,
        "captured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hostname": inventory.hostname,
        "live_only_facts": live,
        # Values replaced by "<redacted>" in the packed files (the names stay): these differ from
        # the live host's, so kernel.cmdline in the capture's inventory shows them redacted.
        "redacted": [{"path": path, "names": names} for path, names in sorted(redactions.items())],
        "note": "Unpack and run `nodeagent --root <dir> inspect`; live-only facts are not in the tree.",
    }, indent=2).encode()


def _field(inventory: Inventory, dotted: str) -> object:
    value: object = inventory
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def top_directory(output: str) -> str:
    """The archive's one top-level directory: the file's name without ``.tar.gz`` (``.tgz``, ``.tar``),
    so that unpacking never spills ``sys/``, ``proc/`` … into the current directory."""
    name = os.path.basename(output)
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "capture"


def unpacked_root(directory: str) -> str:
    """The host tree in ``directory`` after a capture was unpacked there: the archive's one
    top-level directory, or ``directory`` itself for a capture packed without one."""
    entries = os.listdir(directory)
    if len(entries) == 1 and os.path.isfile(os.path.join(directory, entries[0], MANIFEST)):
        return os.path.join(directory, entries[0])
    return directory


class CaptureArchiveError(ValueError):
    """A member of an archive would land outside the directory it is unpacked into."""


def extract(archive: tarfile.TarFile, directory: str) -> None:
    """Unpack ``archive`` into ``directory`` safely: tarfile's ``tar`` filter where this Python has it
    (3.12, and 3.11.4+; Debian 12's 3.11.2 has not), else its refusals by hand: an absolute name or
    one with ``..``, and any member that would be written through a link leading out of
    ``directory``. Links themselves are kept as they are (a capture's /dev and /etc hold absolute ones)."""
    if hasattr(tarfile, "tar_filter"):
        archive.extractall(directory, filter="tar")
        return
    root = os.path.realpath(directory)
    for member in archive.getmembers():
        if os.path.isabs(member.name) or ".." in member.name.split("/"):
            raise CaptureArchiveError(f"{member.name}: a name outside the directory")
        parent = os.path.realpath(os.path.join(root, os.path.dirname(member.name)))
        if parent != root and not parent.startswith(root + os.sep):
            raise CaptureArchiveError(f"{member.name}: would be written through a link out of the directory")
        archive.extract(member, root)


def write_capture(host: Host, output: str) -> CaptureSummary:
    trace = HostTrace()
    inventory = discover(host, record=HostRecord(trace=trace))
    redactions: dict[str, list[str]] = {}
    entries = build_tree(host, trace, redactions)
    counts = {"file": 0, "link": 0, "dir": 0}
    top = top_directory(output)
    with tarfile.open(output, "w:gz") as archive:
        now = time.time()
        info = tarfile.TarInfo(top)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(now)
        archive.addfile(info)
        for path in sorted(entries):
            kind, payload = entries[path]
            info = tarfile.TarInfo(f"{top}/{path.lstrip('/')}".rstrip("/"))
            info.mtime = int(now)
            counts[kind] += 1
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            elif kind == "link":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, str(payload), 0o777
                archive.addfile(info)
            else:
                data = payload if isinstance(payload, bytes) else b""
                info.size, info.mode = len(data), 0o644
                archive.addfile(info, io.BytesIO(data))
        manifest = _manifest(inventory, redactions)
        info = tarfile.TarInfo(f"{top}/{MANIFEST}")
        info.size, info.mtime, info.mode = len(manifest), int(now), 0o644
        archive.addfile(info, io.BytesIO(manifest))
    return CaptureSummary(counts["file"], counts["link"], counts["dir"], inventory, redactions)
