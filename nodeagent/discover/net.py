"""NICs backed by a device: driver, NUMA node, SR-IOV (PF and VFs) and link state.

Link state comes from the kernel's operstate. A long-lived process (``serve``) asks over netlink
with pyroute2; one-shot commands read the same field from sysfs unless asked otherwise, because
importing pyroute2 alone costs more than the whole of ``inspect``'s discovery.
"""

from __future__ import annotations

import re
from typing import Any

from nodeagent.discover.pci import vf_addresses
from nodeagent.host import Host
from nodeagent.inventory import Nic
from nodeagent.lazylog import get_logger

log = get_logger(__name__)
NET_DIR = "/sys/class/net"
_PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def _pci_address(real: str | None) -> str | None:
    """The PCI function a NIC sits on: the nearest PCI address in its device path (virtio too)."""
    for part in reversed((real or "").split("/")):
        if _PCI_ADDRESS.match(part):
            return part
    return None


def _link_states(host: Host) -> dict[str, bool]:
    if not host.live_source("netlink"):
        return {}
    try:
        from pyroute2 import IPRoute
    except ImportError:
        host.skip("netlink", "pyroute2 is not installed")
        return {}
    states: dict[str, bool] = {}
    try:
        with IPRoute() as ipr:
            for link in ipr.get_links():
                states[link.get_attr("IFLA_IFNAME")] = link.get_attr("IFLA_OPERSTATE") == "UP"
    except OSError as exc:
        log.warning("netlink link dump failed: %s", exc)
    return states


def _sysfs_link_up(operstate: str | None) -> bool | None:
    if operstate in ("up", "down", "lowerlayerdown", "notpresent", "dormant"):
        return operstate == "up"
    return None  # "unknown" (many virtual and some physical drivers) or absent


def discover_nics(host: Host, *, netlink: bool = False) -> list[Nic]:
    """Every NIC with a device behind it.

    Only an SR-IOV physical function has ``sriov_*`` files and ``virtfnN`` links, and only a VF a
    ``physfn`` link (drivers/pci/iov.c; a VF never has SR-IOV of its own), so each function reads
    its own kind's files; a VF whose PF was listed takes its ``physfn`` from the PF's ``virtfnN``.
    """
    found: list[dict[str, Any]] = []  # each NIC's fields; physfn is filled in at the end
    links: dict[str, bool] | None = None
    pf_of: dict[str, str] = {}  # VF address → its PF's, from the PFs' virtfnN links
    for name in host.listdir(NET_DIR):
        base = f"{NET_DIR}/{name}"
        device = f"{base}/device"
        real = host.realpath(device)
        if real is None and not host.exists(device):
            continue  # lo, bridges, veths, bonds: no hardware behind them
        if links is None:
            links = _link_states(host) if netlink else {}
        address = _pci_address(real)
        pci = f"/sys/bus/pci/devices/{address}" if address else device
        # A VF of a PF listed before it has no SR-IOV of its own: nothing to read.
        total_vfs = None if address in pf_of else host.read_int(f"{pci}/sriov_totalvfs")
        vfs: list[str] = []
        if total_vfs is not None:  # a PF (a 1024-CPU host's 372 VFs are not)
            vfs = sorted(vf for _, vf in vf_addresses(host, pci))
            pf_of.update(dict.fromkeys(vfs, address or ""))
        numa = host.read_int(f"{pci}/numa_node")
        speed = host.read_int(f"{base}/speed")
        operstate = host.read_str(f"{base}/operstate")
        found.append(dict(
            name=name,
            address=address,
            driver=host.link_name(f"{device}/driver"),
            numa_node=None if numa is None or numa < 0 else numa,
            mac=host.read_str(f"{base}/address"),
            operstate=operstate,
            speed_mbps=None if speed is None or speed < 0 else speed,
            mtu=host.read_int(f"{base}/mtu"),
            sriov_totalvfs=total_vfs,
            sriov_numvfs=None if total_vfs is None else host.read_int(f"{pci}/sriov_numvfs"),
            vfs=vfs,
            link_up=links.get(name, _sysfs_link_up(operstate)),
            pci=pci,
        ))
    nics: list[Nic] = []
    for fields in found:
        pci, address = fields.pop("pci"), fields["address"]
        if fields["sriov_totalvfs"] is not None:
            physfn = None
        else:
            physfn = pf_of.get(address) if address else None
            physfn = physfn or host.link_name(f"{pci}/physfn")
        nics.append(Nic(physfn=physfn, **fields))
    return nics
