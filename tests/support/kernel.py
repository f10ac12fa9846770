"""The kernel side of a fixture host tree: how it reacts to writes and to host commands.

Installed on a Host as an interceptor (and its command runner): a PCI ``bind`` moves the
``driver`` link, ``nr_hugepages`` allocates only what memory allows, ``modprobe vfio-pci``
creates the driver.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.host import CommandResult, Host, WriteRecord
from tests.support.trees import put_file


@dataclass
class KernelEmulator:
    """The kernel's reaction to prep's writes, for a tree built by :func:`build_tree`.

    ``capacity``: most pages the "kernel" can find per (node, kB); ``compaction_gain``: pages
    each compaction makes available; ``native``: the driver a device binds to on a plain probe.
    """

    root: Path
    capacity: dict[tuple[int, int], int] = field(default_factory=dict)
    compaction_gain: int = 0
    native: dict[str, str] = field(default_factory=dict)
    commands: list[list[str]] = field(default_factory=list)
    fail_commands: dict[str, int] = field(default_factory=dict)
    compactions: int = 0

    def fs(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def install(self, host: Host) -> Host:
        host.interceptors.append(self)
        host.command_runner = self.run
        return host

    def __call__(self, host: Host, record: WriteRecord) -> bool:
        path, value = record.path, (record.value or "")
        if record.kind != "write":
            return False
        parts = path.strip("/").split("/")
        if path == "/proc/sys/vm/compact_memory":
            self.compactions += 1
            for key in self.capacity:
                self.capacity[key] += self.compaction_gain
            return True
        if path.endswith("/nr_hugepages") and parts[:4] == ["sys", "devices", "system", "node"]:
            node = int(parts[4][4:])
            kb = int(parts[6][len("hugepages-"):-2])
            want = int(value.strip())
            limit = self.capacity.get((node, kb))
            got = want if limit is None else min(want, limit)
            old = int(self.fs(path).read_text())
            self.fs(path).write_text(f"{got}\n")
            free = self.fs(path).with_name("free_hugepages")
            free.write_text(f"{max(0, int(free.read_text()) + got - old)}\n")
            return True
        if parts[:4] == ["sys", "bus", "pci", "devices"] and len(parts) >= 6:
            address = parts[4]
            device = self.fs(f"/sys/bus/pci/devices/{address}")
            if parts[5] == "driver_override":
                text = value.strip()
                (device / "driver_override").write_text((text or "(null)") + "\n")
                return True
            if parts[5:] == ["driver", "unbind"]:
                self._unbind(device, value.strip())
                return True
        if parts[:4] == ["sys", "bus", "pci", "drivers"] and len(parts) == 6:
            driver, attr = parts[4], parts[5]
            device = self.fs(f"/sys/bus/pci/devices/{value.strip()}")
            if attr == "unbind":
                if (device / "driver").is_symlink() and os.readlink(device / "driver").endswith("/" + driver):
                    (device / "driver").unlink()
                    return True
                raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), path)
            if attr == "bind":
                self._bind(device, driver)
                return True
        if path == "/sys/bus/pci/drivers_probe":
            address = value.strip()
            device = self.fs(f"/sys/bus/pci/devices/{address}")
            if (device / "driver").is_symlink():
                return True
            override = (device / "driver_override").read_text().strip()
            chosen = override if override != "(null)" else self.native.get(address)
            if chosen and self.fs(f"/sys/bus/pci/drivers/{chosen}").is_dir():
                self._bind(device, chosen)
            return True
        if path.startswith(("/sys/", "/proc/sys/")):
            # Any other attribute: the kernel shows what was written, one line.
            target = host.fs_path(path)
            if not os.path.isfile(target):
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            Path(target).write_text(value.rstrip("\n") + "\n")
            return True
        return False

    def _unbind(self, device: Path, address: str) -> None:
        if device.name != address:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), str(device))
        if (device / "driver").is_symlink():
            (device / "driver").unlink()

    def _bind(self, device: Path, driver: str) -> None:
        if (device / "driver").is_symlink():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(device))
        override = (device / "driver_override").read_text().strip()
        if override not in ("(null)", driver):
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), str(device))
        if not self.fs(f"/sys/bus/pci/drivers/{driver}").is_dir():
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), str(device))
        target = f"/sys/bus/pci/drivers/{driver}"
        subsystem = device / "subsystem"
        if subsystem.is_symlink() and not os.readlink(subsystem).startswith("/"):
            # A tree with the kernel's relative links (fixtures.hostgen): the driver link is one too.
            target = os.path.relpath(self.fs(target), os.path.realpath(device))
        (device / "driver").symlink_to(target)

    def run(self, argv: Sequence[str]) -> CommandResult:
        self.commands.append(list(argv))
        code = self.fail_commands.get(argv[0], 0)
        if code:
            return CommandResult(list(argv), code, "", f"{argv[0]}: simulated failure")
        if list(argv[:2]) == ["modprobe", "vfio-pci"]:
            for attr in ("bind", "unbind", "new_id"):
                put_file(self.root, f"/sys/bus/pci/drivers/vfio-pci/{attr}", "")
        return CommandResult(list(argv), 0)
