"""The kernel side of vGPU in a fixture tree: what a write to ``create``, ``remove`` or
``current_vgpu_type`` does on a real host, done to the tree.

In a generated tree these files are plain files: writing a UUID to ``create`` would only leave the
UUID in it. :class:`VgpuKernel`, installed on a Host as an interceptor (after
:class:`tests.support.kernel.KernelEmulator`, so that it sees the writes first), makes the device
the way the mdev core does (``<parent>/<uuid>/`` with its ``mdev_type`` link, the type's
``devices/<uuid>`` link, ``/sys/bus/mdev/devices/<uuid>``), removes it on ``remove``, and keeps
``available_instances`` and the VFs' ``creatable_vgpu_types`` as NVIDIA's driver does: time-sliced
types are homogeneous per physical GPU and a type holds at most its ``max_instance``
(fixtures/hostgen_vgpu.py applies the same rule when it builds the tree). It refuses what the
kernel refuses: a malformed UUID (EINVAL), no instance left (EUSERS, mdev_device_create), a type a
VF does not list (EINVAL), a device in use (``busy``: EBUSY on remove or on clearing a VF).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fixtures.hostgen import kernel_relative_link
from fixtures.hostgen_vgpu import creatable_text, remaining, tables
from nodeagent.host import Host, WriteRecord

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_MAX = re.compile(r"max_instance=(\d+)")


def _error(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


def _put(path: Path, text: str) -> None:
    """Write a sysfs attribute of the tree as the kernel would change it (read-only to the tree's user)."""
    path.chmod(path.stat().st_mode | 0o200)
    path.write_text(text)


@dataclass
class VgpuKernel:
    root: Path
    sriov_table: str = "h100xm-80g"  # the vGPU 17 type table of the tree's VFs (fixtures/vgpu_types.yaml)
    busy: set[str] = field(default_factory=set)  # UUIDs and VF addresses a VM holds
    writes: list[tuple[str, str]] = field(default_factory=list)

    def install(self, host: Host) -> Host:
        host.interceptors.append(self)
        return host

    def fs(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def link(self, path: str, target: str) -> None:
        self.fs(path).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(kernel_relative_link(path, target), self.fs(path))

    def host_path(self, real: str) -> str:
        return "/" + os.path.relpath(real, self.root)

    def __call__(self, host: Host, record: WriteRecord) -> bool:
        if record.kind != "write":
            return False
        path, value = record.path, (record.value or "").strip()
        parts = path.strip("/").split("/")
        if parts[-1] == "create" and len(parts) >= 3 and parts[-3] == "mdev_supported_types":
            self.writes.append((path, value))
            self.create(path, value)
            return True
        if parts[:4] == ["sys", "bus", "mdev", "devices"] and parts[-1] == "remove":
            self.writes.append((path, value))
            self.remove(path, parts[4], value)
            return True
        if parts[-2:] == ["nvidia", "current_vgpu_type"]:
            self.writes.append((path, value))
            self.assign(path, value)
            return True
        return False

    # --- mediated devices

    def create(self, path: str, value: str) -> None:
        type_dir = os.path.realpath(self.fs(os.path.dirname(path)))
        parent_dir = os.path.dirname(os.path.dirname(type_dir))
        if not _UUID.match(value):
            raise _error(errno.EINVAL, path)
        if int(Path(type_dir, "available_instances").read_text()) < 1:
            raise _error(errno.EUSERS, path)
        if self.fs(f"/sys/bus/mdev/devices/{value}").exists():
            raise _error(errno.EEXIST, path)
        device = self.host_path(os.path.join(parent_dir, value))
        type_path = self.host_path(type_dir)
        self.link(f"{device}/mdev_type", type_path)
        self.link(f"{type_path}/devices/{value}", device)
        self.link(f"/sys/bus/mdev/devices/{value}", device)
        self.fs(f"{device}/remove").write_text("")  # write-only in sysfs (0200)
        self.recount(os.path.basename(parent_dir))

    def remove(self, path: str, uuid: str, value: str) -> None:
        if value != "1":
            raise _error(errno.EINVAL, path)
        if uuid in self.busy:
            raise _error(errno.EBUSY, path)
        link = self.fs(f"/sys/bus/mdev/devices/{uuid}")
        device = os.path.realpath(link)
        type_dir = os.path.realpath(os.path.join(device, "mdev_type"))
        os.unlink(os.path.join(type_dir, "devices", uuid))
        os.unlink(link)
        shutil.rmtree(device)
        self.recount(os.path.basename(os.path.dirname(device)))

    def parents_of(self, gpu: str) -> list[str]:
        """The mdev parents of one physical GPU: itself, or its VFs."""
        found = []
        for name in sorted(os.listdir(self.fs("/sys/class/mdev_bus"))):
            physfn = self.fs(f"/sys/class/mdev_bus/{name}/physfn")
            owner = os.path.basename(os.readlink(physfn)) if physfn.is_symlink() else name
            if owner == gpu:
                found.append(name)
        return found

    def recount(self, parent: str) -> None:
        physfn = self.fs(f"/sys/class/mdev_bus/{parent}/physfn")
        gpu = os.path.basename(os.readlink(physfn)) if physfn.is_symlink() else parent
        parents = self.parents_of(gpu)
        used: Counter[str] = Counter()
        held: set[str] = set()
        for name in parents:
            types = self.fs(f"/sys/class/mdev_bus/{name}/mdev_supported_types")
            for type_id in os.listdir(types):
                count = len(os.listdir(types / type_id / "devices"))
                used[type_id] += count
                if count:
                    held.add(name)
        for name in parents:
            types = self.fs(f"/sys/class/mdev_bus/{name}/mdev_supported_types")
            for type_id in os.listdir(types):
                cap = int(_MAX.search((types / type_id / "description").read_text()).group(1))  # type: ignore[union-attr]
                other = any(n and t != type_id for t, n in used.items())
                left = 0 if other else max(0, cap - used[type_id])
                vf = (self.fs(f"/sys/class/mdev_bus/{name}/physfn")).is_symlink()
                available = (0 if name in held else min(1, left)) if vf else left
                _put(types / type_id / "available_instances", f"{available}\n")

    # --- SR-IOV vGPU

    def assign(self, path: str, value: str) -> None:
        vf_dir = Path(os.path.realpath(self.fs(os.path.dirname(os.path.dirname(path)))))
        current_file = vf_dir / "nvidia" / "current_vgpu_type"
        if not value.isdigit():
            raise _error(errno.EINVAL, path)
        wanted, current = int(value), int(current_file.read_text())
        if wanted == current:
            return
        if current and vf_dir.name in self.busy:
            raise _error(errno.EBUSY, path)
        if wanted:
            listed = {int(line.split(":")[0]) for line in (vf_dir / "nvidia" / "creatable_vgpu_types").read_text()
                      .splitlines()[1:] if line.strip()}
            if current or wanted not in listed:
                raise _error(errno.EINVAL, path)
        _put(current_file, f"{wanted}\n")
        self.refresh_vfs(vf_dir / "physfn")

    def refresh_vfs(self, physfn: Path) -> None:
        pf = Path(os.path.realpath(physfn))
        vfs = sorted((p for p in pf.iterdir() if p.name.startswith("virtfn")), key=lambda p: int(p.name[6:]))
        table = tables()["sriov"][self.sriov_table]
        current = {vf: int((vf / "nvidia" / "current_vgpu_type").read_text()) for vf in vfs}
        free = remaining(table, Counter(v for v in current.values() if v))
        for vf, assigned in current.items():
            _put(vf / "nvidia" / "creatable_vgpu_types", creatable_text(table, {} if assigned else free))
