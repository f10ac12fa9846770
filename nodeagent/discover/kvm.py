"""KVM: /dev/kvm (and its API version by ioctl on a live host), the module and nesting, vhost/tun."""

from __future__ import annotations

import os

from nodeagent.host import Host
from nodeagent.inventory import KvmInfo

# <linux/kvm.h>: KVMIO = 0xAE; KVM_GET_API_VERSION = _IO(KVMIO, 0x00); KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03)
KVM_GET_API_VERSION = 0xAE00
KVM_CHECK_EXTENSION = 0xAE03
KVM_CAP_NR_VCPUS = 9
KVM_CAP_MAX_VCPUS = 66
VENDOR_MODULES = ("kvm_intel", "kvm_amd")


def discover_kvm(host: Host) -> KvmInfo:
    if host.is_char_device("/dev/kvm"):
        device: str | None = "char"
    elif host.exists("/dev/kvm"):
        device = "file"  # a fixture tree's stand-in for the device
    else:
        device = None
    api_version = max_vcpus = recommended = None
    accessible = device is not None and host.access("/dev/kvm", os.R_OK | os.W_OK)
    if device is not None and not accessible:
        host.note_denied("/dev/kvm")  # present, but this user may not open it: not "missing"
    # live_source first: under another root the ioctl is reported as skipped even where the tree
    # holds only a stand-in file for the device.
    if device is not None and host.live_source("kvm-ioctl") and device == "char" and accessible:
        try:
            api_version = host.ioctl("/dev/kvm", KVM_GET_API_VERSION)
            recommended = host.ioctl("/dev/kvm", KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS) or None
            max_vcpus = host.ioctl("/dev/kvm", KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS) or None
        except OSError as exc:
            host.warn("/dev/kvm", f"ioctl failed: {exc.strerror}")
    module = _vendor_module(host)
    return KvmInfo(
        available=device is not None,
        device=device,
        accessible=accessible,
        api_version=api_version,
        max_vcpus=max_vcpus,
        recommended_vcpus=recommended,
        module=module,
        nested=_nested(host, module),
        vhost_net=host.exists("/dev/vhost-net"),
        tun=host.exists("/dev/net/tun"),
    )


def _vendor_module(host: Host) -> str | None:
    """kvm_intel / kvm_amd, or another kvm_* backend (e.g. kvm_pvm) when neither is loaded."""
    modules = host.listdir("/sys/module")
    for name in VENDOR_MODULES:
        if name in modules:
            return name
    others = [m for m in modules if m.startswith("kvm_")]
    return others[0] if others else ("kvm" if "kvm" in modules else None)


def _nested(host: Host, module: str | None) -> bool | None:
    if module is None:
        return None
    value = host.read_str(f"/sys/module/{module}/parameters/nested")
    if value is None:
        return None
    return value in ("Y", "y", "1")
