"""IOMMU, as virt-host-validate judges it: firmware table, kernel groups, command line."""

from __future__ import annotations

from nodeagent.host import Host
from nodeagent.inventory import IommuInfo
from nodeagent.parse import cmdline_params

ENABLE_ARGUMENT = {"GenuineIntel": "intel_iommu=on", "AuthenticAMD": "amd_iommu=on"}


def discover_iommu(host: Host, cmdline: str, cpu_vendor: str | None) -> IommuInfo:
    # DMAR: Intel VT-d; IVRS: AMD-Vi; IORT: the Arm SMMUs (arm64 servers with ACPI).
    table = next((t for t in ("DMAR", "IVRS", "IORT") if host.exists(f"/sys/firmware/acpi/tables/{t}")), None)
    groups = sum(1 for g in host.listdir("/sys/kernel/iommu_groups") if g.isdigit())
    params = cmdline_params(cmdline)
    mentioned = [params[k] for k in ("intel_iommu", "amd_iommu") if k in params]
    cmdline_enabled = None if not mentioned else any((v or "").split(",")[0] == "on" for v in mentioned)
    return IommuInfo(
        # The kernel creates IOMMU groups only when an IOMMU driver is active.
        enabled=groups > 0,
        groups=groups,
        firmware_table=table,
        cmdline_enabled=cmdline_enabled,
        passthrough_mode=params.get("iommu") == "pt",
        enable_argument=ENABLE_ARGUMENT.get(cpu_vendor or ""),
    )
