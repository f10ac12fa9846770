"""Fixtures for the prep tests: small synthetic host trees whose kernel side is emulated.

``make_host`` builds a tree with :func:`tests.support.trees.build_tree` (writable, from a few
parameters) and installs :class:`tests.support.kernel.KernelEmulator` on its Host, so that the
kernel reacts to writes (a PCI ``bind`` moves the ``driver`` link, ``nr_hugepages`` allocates
only what memory allows, ``modprobe vfio-pci`` creates the driver). Tests on the shared fixture
hosts (``fresh_host_tree``) use the same emulator.

The ``real_host_state`` fixture snapshots this machine's hugepage and KSM values and the files
nodeagent owns, and restores them afterwards whatever the test did.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.host import Host
from tests.support.kernel import KernelEmulator
from tests.support.trees import TreeSpec, build_tree


@pytest.fixture
def make_host(tmp_path: Path) -> Iterator[object]:
    """``make_host(spec, **emulator_kwargs) -> (Host, KernelEmulator, root)``."""
    counter = [0]

    def make(spec: TreeSpec | None = None, **kwargs: object) -> tuple[Host, KernelEmulator, Path]:
        counter[0] += 1
        spec = spec or TreeSpec()
        root = build_tree(tmp_path / f"host{counter[0]}", spec)
        native = {fn.address: fn.driver for fn in spec.pci if fn.driver and fn.driver != "vfio-pci"}
        emulator = KernelEmulator(root, capacity=dict(spec.capacity), native=native, **kwargs)  # type: ignore[arg-type]
        host = emulator.install(Host(str(root)))
        return host, emulator, root

    yield make


# --- the real host ---------------------------------------------------------------------------

REAL_FILES = ("/etc/nodeagent/profile.yaml", "/var/lib/nodeagent/journal.json",
              "/etc/default/grub.d/90-nodeagent.cfg", "/etc/modprobe.d/90-nodeagent-vfio.conf")
REAL_DIRS = ("/etc/nodeagent", "/var/lib/nodeagent", "/etc/default/grub.d", "/etc/default", "/etc/modprobe.d")


def _real_values() -> dict[str, str]:
    values: dict[str, str] = {}
    node_dir = Path("/sys/devices/system/node")
    for pool in sorted(node_dir.glob("node*/hugepages/hugepages-*kB/nr_hugepages")):
        values[str(pool)] = pool.read_text().strip()
    ksm = Path("/sys/kernel/mm/ksm")
    for name in ("run", "pages_to_scan", "sleep_millisecs"):
        if (ksm / name).exists():
            values[str(ksm / name)] = (ksm / name).read_text().strip()
    return values


@pytest.fixture
def real_host_state() -> Iterator[dict[str, str]]:
    """This machine's hugepage/KSM values and nodeagent's files, restored after the test."""
    if os.geteuid() != 0 or not os.access("/sys/kernel/mm/ksm/run", os.W_OK):
        pytest.skip("needs root and a writable /sys (the real-host tests change kernel state)")
    before = _real_values()
    files = {p: Path(p).read_text() if Path(p).exists() else None for p in REAL_FILES}
    dirs = {d: Path(d).is_dir() for d in REAL_DIRS}
    try:
        yield before
    finally:
        for path, value in sorted(before.items(), key=lambda item: "run" not in item[0]):
            current = Path(path).read_text().strip()
            if current != value:
                # KSM run=2 unmerges before a stop; pools are simply set back.
                Path(path).write_text(value)
        for path, content in files.items():
            if content is None:
                Path(path).unlink(missing_ok=True)
            else:
                Path(path).write_text(content)
        lock = Path("/var/lib/nodeagent/apply.lock")
        if not dirs["/var/lib/nodeagent"]:
            lock.unlink(missing_ok=True)
        for directory in REAL_DIRS:
            if not dirs[directory] and Path(directory).is_dir() and not any(Path(directory).iterdir()):
                shutil.rmtree(directory)
