"""The few host facts only prep needs, read once before planning so that planning stays pure.

The Inventory describes the node for everyone; these are the details that matter only to a writer:
the cpufreq policies (the files a governor is written to), the files nodeagent owns (drop-in,
modprobe.d, installed profile), whether vfio-pci is loaded, which commands regenerate the
bootloader config, and, only for GPUs that would move, whether their host driver is in use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nodeagent.discover.pci import PCI_DEVICES, read_driver_override
from nodeagent.gpuselect import selected_gpus
from nodeagent.host import Host
from nodeagent.inventory import CpufreqPolicy, Inventory
from nodeagent.owned import DROPIN_PATH, KUBELET_STATE_PENDING_PATH, MODPROBE_PATH, PROFILE_PATH
from nodeagent.prep.bootfacts import BootloaderFacts, read_bootloader
from nodeagent.prep.groups import predict_group
from nodeagent.prep.kubeletconfig import KubeletFacts, gather_kubelet
from nodeagent.profile import NodeProfile

CPUFREQ = "/sys/devices/system/cpu/cpufreq"

_NVIDIA_MINOR = re.compile(r"^Device Minor:\s*(\d+)", re.MULTILINE)
_NVIDIA_DEV = re.compile(r"^/dev/nvidia(\d+)$")
# The NVSwitch driver's device files (per switch, and the control node): Fabric Manager holds them.
_NVSWITCH_DEV = re.compile(r"^/dev/nvidia-nvswitch(\d+|ctl)$")


@dataclass(frozen=True)
class DeviceUse:
    """Why a PCI function's host driver is busy (empty: free to unbind)."""

    address: str
    holders: list[str]


@dataclass
class PrepFacts:
    cpufreq_present: bool = False
    policies: list[CpufreqPolicy] = field(default_factory=list)
    dropin: str | None = None
    modprobe_conf: str | None = None
    installed_profile: str | None = None
    vfio_pci_loaded: bool = False
    driver_overrides: dict[str, str | None] = field(default_factory=dict)  # address → override
    device_use: dict[str, DeviceUse] = field(default_factory=dict)
    # GPU Operator's sandbox vfio-manager runs on this node (its pid): it binds GPUs itself (either/or)
    vfio_manager_pid: int | None = None
    # spec.kernel.realtimeScheduling: the running value and nodeagent's sysctl drop-in (None: absent)
    sched_rt_runtime_us: int | None = None
    sysctl_dropin: str | None = None
    # spec.rebootStrategy: kured: the sentinel file's text (None: absent)
    reboot_sentinel: str | None = None
    grub_command: list[str] | None = None  # how this host regenerates grub.cfg
    bootloader: BootloaderFacts = field(default_factory=BootloaderFacts)
    # With the IOMMU off: each selected GPU's group as the PCI topology predicts it (None: not predictable)
    predicted_groups: dict[str, list[str] | None] = field(default_factory=dict)
    can_run_commands: bool = False
    kubelet: KubeletFacts | None = None  # spec.kubelet (or implied by spec.cpu.isolated), or a pending step
    unreadable: dict[str, str] = field(default_factory=dict)  # owned file present but not readable → why


# spec.kernel.realtimeScheduling (nodeagent.prep.rtsched): the running value and its persisted form.
SCHED_RT_RUNTIME = "/proc/sys/kernel/sched_rt_runtime_us"
SYSCTL_DROPIN = "/etc/sysctl.d/90-nodeagent-realtime.conf"


def gather(host: Host, inventory: Inventory, profile: NodeProfile) -> PrepFacts:
    """Read what the plan needs beyond the Inventory. Cheap on a converged node (no /proc scan)."""
    facts = PrepFacts(
        dropin=host.read_text(DROPIN_PATH),
        modprobe_conf=host.read_text(MODPROBE_PATH),
        installed_profile=host.read_text(PROFILE_PATH),
        vfio_pci_loaded=host.is_dir("/sys/bus/pci/drivers/vfio-pci"),
        grub_command=grub_command(host),
        bootloader=read_bootloader(host),
        can_run_commands=host.is_live or host.command_runner is not None,
    )
    for path, text in ((DROPIN_PATH, facts.dropin), (MODPROBE_PATH, facts.modprobe_conf),
                       (PROFILE_PATH, facts.installed_profile)):
        if text is None and (host.exists(path) or host.is_denied(path)):
            facts.unreadable[path] = "present but cannot be read (permission denied or an I/O error)"
    if profile.kernel is not None and profile.kernel.realtime_scheduling:
        facts.sched_rt_runtime_us = host.read_int(SCHED_RT_RUNTIME)
        facts.sysctl_dropin = host.read_text(SYSCTL_DROPIN)
    if profile.kubelet is not None or (profile.cpu is not None and profile.cpu.isolated) or \
            host.exists(KUBELET_STATE_PENDING_PATH):
        facts.kubelet = gather_kubelet(host, inventory)
        if facts.kubelet.path is not None and facts.kubelet.text is None and \
                (host.exists(facts.kubelet.path) or host.is_denied(facts.kubelet.path)):
            facts.unreadable[facts.kubelet.path] = "present but cannot be read (permission denied or an I/O error)"
    if profile.reboot_strategy == "kured":
        facts.reboot_sentinel = host.read_text(profile.reboot_sentinel)
    if profile.cpu is not None and profile.cpu.governor:
        facts.cpufreq_present, facts.policies = read_policies(inventory)
    if profile.gpu_passthrough or profile.nvswitch_passthrough:
        moving: list[str] = []
        switches = inventory.nvswitch_devices if profile.nvswitch_passthrough else []
        for gpu in [*selected_gpus(profile, inventory), *switches]:
            for member in gpu.group_members or []:
                facts.driver_overrides[member.address] = read_driver_override(host, member.address)
                if member.driver and "vfio" not in member.driver:
                    moving.append(member.address)
            if gpu.iommu_group is None and not inventory.iommu.enabled:
                # Decided today even though the binding waits for the reboot that turns the IOMMU on.
                predicted = predict_group(host, gpu.address)
                facts.predicted_groups[gpu.address] = predicted
                for address in predicted or [gpu.address]:
                    driver = host.link_name(f"{PCI_DEVICES}/{address}/driver")
                    if driver and "vfio" not in driver:
                        moving.append(address)
        if moving:
            facts.device_use = device_use(host, sorted(set(moving)),
                                          nvswitches={s.address for s in inventory.nvswitch_devices})
            facts.vfio_manager_pid = vfio_manager_pid(host)
    return facts


# GPU Operator's nvidia-vfio-manager container runs ``vfio-manage.sh bind --all && sleep inf``
# (its shell stays for the pod's life): a process whose command line names vfio-manage.
_VFIO_MANAGER_MARK = b"vfio-manage"


def vfio_manager_pid(host: Host) -> int | None:
    """The pid of a running GPU Operator sandbox vfio-manager on this host, or None."""
    for pid in host.listdir("/proc"):
        if not pid.isdigit():
            continue
        cmdline = host.read_bytes(f"/proc/{pid}/cmdline", limit=4096)
        if cmdline and _VFIO_MANAGER_MARK in cmdline:
            return int(pid)
    return None


def read_policies(inventory: Inventory) -> tuple[bool, list[CpufreqPolicy]]:
    """The cpufreq policies discovery read (each policy once; its ``affected_cpus`` answer for all its CPUs)."""
    policies = list(inventory.cpu.cpufreq_policies)
    return bool(policies), policies


def grub_command(host: Host) -> list[str] | None:
    """The distribution's own way to regenerate grub.cfg (never edited in place)."""
    if host.which("update-grub"):
        return ["update-grub"]
    for tool, config in (("grub2-mkconfig", "/boot/grub2/grub.cfg"), ("grub-mkconfig", "/boot/grub/grub.cfg")):
        if host.which(tool):
            return [tool, "-o", config]
    return None


def device_use(host: Host, addresses: list[str], nvswitches: set[str] | None = None) -> dict[str, DeviceUse]:
    """Who holds each device through its host driver: open device files, a bound framebuffer.

    Unbinding a driver whose device is open either blocks (the NVIDIA driver waits for every
    handle) or yanks the device from under a process; a bound framebuffer is the console. An
    NVSwitch (``nvswitches``) on the nvidia driver is held by whoever has an NVSwitch device file
    open (``/dev/nvidia-nvswitchN``, ``/dev/nvidia-nvswitchctl``: Fabric Manager): which file is
    which switch is not in sysfs, so any of them counts for every NVSwitch that would move.
    """
    wanted: dict[str, str] = {}  # device file → address
    nvidia_unknown: list[str] = []
    switches_held = [a for a in addresses if a in (nvswitches or set())
                     and host.link_name(f"{PCI_DEVICES}/{a}/driver") == "nvidia"]
    uses: dict[str, list[str]] = {a: [] for a in addresses}
    for address in addresses:
        device = f"{PCI_DEVICES}/{address}"
        for fb in host.listdir(f"{device}/graphics"):
            if fb.startswith("fb"):
                uses[address].append(f"framebuffer /dev/{fb} is bound to it (console)")
        for card in host.listdir(f"{device}/drm"):
            if card.startswith(("card", "renderD")):
                wanted[f"/dev/dri/{card}"] = address
        if address in switches_held:
            continue
        info = host.read_text(f"/proc/driver/nvidia/gpus/{address}/information")
        if info is not None:
            match = _NVIDIA_MINOR.search(info)
            if match:
                wanted[f"/dev/nvidia{match.group(1)}"] = address
            else:
                nvidia_unknown.append(address)
        elif host.link_name(f"{device}/driver") == "nvidia":
            nvidia_unknown.append(address)
    if not wanted and not nvidia_unknown and not switches_held:
        return {a: DeviceUse(a, u) for a, u in uses.items()}
    for pid in host.listdir("/proc"):
        if not pid.isdigit():
            continue
        fds = host.listdir(f"/proc/{pid}/fd")
        if not fds:
            continue
        comm = None
        for fd in fds:
            target = host.readlink(f"/proc/{pid}/fd/{fd}")
            if not target or not target.startswith("/dev/"):
                continue
            holder_of = wanted.get(target)
            if holder_of is None and nvidia_unknown and _NVIDIA_DEV.match(target):
                holder_of = "*nvidia"
            if holder_of is None and switches_held and _NVSWITCH_DEV.match(target):
                holder_of = "*nvswitch"
            if holder_of is None:
                continue
            comm = comm or host.read_str(f"/proc/{pid}/comm") or "?"
            note = f"{target} is open by pid {pid} ({comm})"
            shared = {"*nvidia": nvidia_unknown, "*nvswitch": switches_held}
            for address in shared.get(holder_of, [holder_of]):
                if note not in uses[address]:
                    uses[address].append(note)
    return {a: DeviceUse(a, u) for a, u in uses.items()}

