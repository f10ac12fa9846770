"""The NodeProfile (docs/profile.md): schema, parsing and validation with field-named errors.

A profile is the only input that makes nodeagent write to a live kernel, so it is validated
strictly: every unknown field is an error (a typo such as ``sise`` must never silently mean "use
the default"), every error names its field path and the accepted form, and all errors are
reported at once. When an :class:`~nodeagent.inventory.Inventory` is given, the facts of *this*
host are checked too (NUMA node ids, CPU numbers, page sizes the kernel offers).

Accepted forms (see ``grub/README.md`` and the project README's profile reference):

* page sizes: ``2Mi``/``1Gi``, also ``2M``/``1G``/``2048kB``/``1048576kB``;
* memory quantities: ``4Gi``, ``512Mi``, ``4G``, ``4096M`` or a plain number of bytes;
* CPU lists: the kernel's cpulist syntax (``0-3,8,10-15``, strided ``0-31:2/4``);
* PCI ids: four hex digits, optionally ``0x``-prefixed (``10de``, ``0x10DE``);
* PCI addresses: ``0000:17:00.0`` (``17:00.0`` means domain ``0000``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodeagent.gpuselect import GpuSelector
from nodeagent.kubenames import DNS_SUBDOMAIN, TAINT_EFFECT_FORM, TAINT_EFFECTS, label_key_error, label_value_error
from nodeagent.parse import (
    CPULIST_FORM,
    MAX_CPU_ID,
    QUANTITY_FORM,
    SIZE_FORM,
    CpuIdRangeError,
    format_cpulist,
    page_size_name,
    parse_cpulist,
    parse_page_size_kb,
    parse_quantity_bytes,
)
from nodeagent.vgpuspec import VgpuSpec, parse_vgpu
from nodeagent.yamldoc import DocumentFieldError, YamlDocumentError, load_documents

if TYPE_CHECKING:
    from nodeagent.inventory import Inventory

API_VERSION = "nodeagent.io/v1alpha1"
KIND = "NodeProfile"

DEFAULT_FLOOR_PERCENT = 10
DEFAULT_FLOOR_BYTES = 4 * 1024**3
DEFAULT_ALLOCATION_TIMEOUT_S = 60.0

#: Hostile-input bounds (README "Profile limits"). A real profile is a few KiB with a handful of
#: entries per list; these keep a mistaken or malicious ConfigMap from costing seconds of CPU
#: or gigabytes of memory on every node that parses it.
MAX_PROFILE_BYTES = 64 * 1024
MAX_LIST_ITEMS = 256  # each list (taints, pages, passthrough, additionalArgs) and label map

#: Boot arguments nodeagent computes itself; ``additionalArgs`` may not set them behind its back.
MANAGED_BOOT_ARGS = frozenset({
    "isolcpus", "nohz_full", "rcu_nocbs", "irqaffinity", "systemd.cpu_affinity", "intel_iommu",
    "amd_iommu", "iommu", "hugepagesz", "hugepages", "default_hugepagesz",
})

_HEX4 = re.compile(r"^(?:0x)?([0-9a-fA-F]{4})$")
_PCI_ADDRESS = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")
_GOVERNOR = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# The drop-in is sourced by a shell (grub-mkconfig): only characters that need no quoting.
_BOOT_ARG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.,:=/+@%-]*$")

NAME_FORM = "a lower-case DNS name such as 'gpu-hpc' (letters, digits, '-', '.')"
PCI_ID_FORM = "four hex digits such as '10de' (or '0x10de')"
PCI_ADDRESS_FORM = "a PCI address such as '0000:17:00.0'"
BOOT_ARG_FORM = "one kernel argument such as 'mitigations=off' (no spaces or quotes; shell-safe characters only)"


class ProfileError(DocumentFieldError):
    """An invalid profile. ``errors`` holds one ``field.path: message`` line per problem."""


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class CpuSpec:
    reserved: list[int] | None = None
    isolated: list[int] | None = None
    governor: str | None = None


@dataclass(frozen=True)
class HugepageRequest:
    """``count`` pages of ``size_kb`` on ``numa_node`` (None: spread evenly over the nodes)."""

    size_kb: int
    count: int
    numa_node: int | None
    index: int  # position in spec.hugepages.pages, for messages

    @property
    def size(self) -> str:
        return page_size_name(self.size_kb)


@dataclass(frozen=True)
class HugepagesSpec:
    pages: list[HugepageRequest] = field(default_factory=list)
    default_size_kb: int | None = None
    floor_percent: float = DEFAULT_FLOOR_PERCENT
    floor_bytes: int = DEFAULT_FLOOR_BYTES
    allocation_timeout_s: float = DEFAULT_ALLOCATION_TIMEOUT_S


@dataclass(frozen=True)
class KsmSpec:
    enabled: bool
    pages_to_scan: int | None = None
    sleep_millisecs: int | None = None


@dataclass(frozen=True)
class KernelSpec:
    iommu: bool | None = None  # None: on when gpu.passthrough selects anything
    additional_args: list[str] = field(default_factory=list)
    # kernel.sched_rt_runtime_us=-1 (RT tasks unthrottled), what KubeVirt's kubevirt.io/realtime label needs
    realtime_scheduling: bool | None = None


#: spec.kubelet: the policy names the kubelet accepts (KubeletConfiguration), and the CPU manager
#: policy options of the static policy (each "true" or "false").
CPU_MANAGER_POLICIES = ("none", "static")
CPU_MANAGER_POLICY_OPTIONS = ("full-pcpus-only", "distribute-cpus-across-numa", "align-by-socket",
                              "distribute-cpus-across-cores", "strict-cpu-reservation",
                              "prefer-align-cpus-by-uncorecache")
TOPOLOGY_MANAGER_POLICIES = ("none", "best-effort", "restricted", "single-numa-node")
TOPOLOGY_MANAGER_SCOPES = ("container", "pod")
MEMORY_MANAGER_POLICIES = ("None", "Static")


@dataclass(frozen=True)
class ReservedMemory:
    """Memory the kubelet's memory manager keeps off pods on one NUMA node (bytes)."""

    numa_node: int
    memory_bytes: int


@dataclass(frozen=True)
class KubeletSpec:
    """spec.kubelet: the kubelet's CPU, topology and memory managers (None: left as the kubelet has it).

    ``manage: false`` turns off what spec.cpu.isolated otherwise implies (the static CPU manager).
    """

    manage: bool = True
    cpu_manager_policy: str | None = None
    cpu_manager_policy_options: dict[str, str] = field(default_factory=dict)
    reserved_system_cpus: list[int] | None = None
    topology_manager_policy: str | None = None
    topology_manager_scope: str | None = None
    memory_manager_policy: str | None = None
    reserved_memory: list[ReservedMemory] | None = None  # None: derived from the kubelet's reservations


#: Where kured looks for its sentinel by default (``--reboot-sentinel``): on tmpfs, gone after the reboot.
DEFAULT_REBOOT_SENTINEL = "/var/run/reboot-required"
REBOOT_STRATEGIES = ("none", "kured")
GPU_FIELDS = ("passthrough", "nvswitch", "vgpu")
NVSWITCH_MODES = ("host", "passthrough")
NVSWITCH_FORM = "one of host (Fabric Manager on the host keeps them), passthrough (to vfio-pci, for a VM)"
_ABSOLUTE_PATH = re.compile(r"^/(?!.*(?:^|/)\.\.(?:/|$))[A-Za-z0-9._/+-]{1,255}$")


@dataclass(frozen=True)
class NodeProfile:
    name: str
    node_selector: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[Taint] = field(default_factory=list)
    gpu_passthrough: list[GpuSelector] = field(default_factory=list)
    # spec.gpu.nvswitch: "host" (the shared-NVSwitch model: NVSwitches stay on the host driver for
    # Fabric Manager, never touched) or "passthrough" (the full-passthrough model: every NVSwitch to
    # vfio-pci, with the GPUs' whole-IOMMU-group interlocks)
    gpu_nvswitch: str = "host"
    gpu_vgpu: VgpuSpec | None = None  # spec.gpu.vgpu: the opt-in to create vGPU instances (nodeagent.vgpuspec)
    cpu: CpuSpec | None = None
    hugepages: HugepagesSpec | None = None
    ksm: KsmSpec | None = None
    kernel: KernelSpec | None = None
    kubelet: KubeletSpec | None = None
    # spec.workloadClasses: classes laid over the table in force (nodeagent.workloads), as written; validated
    workload_classes: dict[str, Any] | None = None
    # spec.rebootStrategy: "none" (the reboot-required label only) or "kured" (also kured's sentinel file)
    reboot_strategy: str = "none"
    reboot_sentinel: str = DEFAULT_REBOOT_SENTINEL
    source_text: str | None = field(default=None, compare=False, repr=False)

    @property
    def iommu_wanted(self) -> bool:
        """IOMMU on the boot line: asked for explicitly, or implied by GPU passthrough."""
        if self.kernel is not None and self.kernel.iommu is not None:
            return self.kernel.iommu
        return bool(self.gpu_passthrough) or self.nvswitch_passthrough

    @property
    def nvswitch_passthrough(self) -> bool:
        """spec.gpu.nvswitch: passthrough — the NVSwitches go to vfio-pci with the GPUs."""
        return self.gpu_nvswitch == "passthrough"


# --- loading ---------------------------------------------------------------------------------


def load_profile(path: str, inventory: Inventory | None = None) -> NodeProfile:
    """Read and validate a profile file (YAML). Raises :class:`ProfileError` for any problem.

    The path is the operator's own file (``-f``), not a host path, so it is read directly. At
    most :data:`MAX_PROFILE_BYTES` are read: a larger file is refused unread.
    """
    return parse_profile_bytes(read_profile_bytes(path), inventory, source=path)


def read_profile_bytes(path: str) -> bytes:
    """The bytes of a profile file, refusing one larger than :data:`MAX_PROFILE_BYTES`."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise ProfileError([f"cannot read the profile: {exc.strerror or exc}"], source=path) from exc
    check_profile_size(raw, source=path)
    return raw


def check_profile_size(raw: bytes | str, *, source: str | None = None) -> None:
    size = len(raw.encode("utf-8", errors="surrogatepass") if isinstance(raw, str) else raw)
    if size > MAX_PROFILE_BYTES:
        raise ProfileError([f"the profile is larger than {MAX_PROFILE_BYTES // 1024} KiB; a NodeProfile "
                            "is a few KiB (split it, or remove what is not a NodeProfile)"], source=source)


def parse_profile_bytes(raw: bytes, inventory: Inventory | None = None, *,
                        source: str | None = None) -> NodeProfile:
    """Validate a profile as read from a file: size, UTF-8, then :func:`parse_profile_text`."""
    check_profile_size(raw, source=source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ProfileError([f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
                            f"(line {line}); save the profile as UTF-8"], source=source) from exc
    return parse_profile_text(text, inventory, source=source)


def parse_profile_text(text: str, inventory: Inventory | None = None, *, source: str | None = None) -> NodeProfile:
    check_profile_size(text, source=source)
    try:
        documents = load_documents(text)
    except YamlDocumentError as exc:
        message = "not a NodeProfile: nested too deeply" if exc.message == "nested too deeply" else exc.message
        raise ProfileError([message], source=source) from exc
    if len(documents) != 1:
        raise ProfileError([f"expected exactly one YAML document (a NodeProfile), found {len(documents)}"],
                           source=source)
    profile = parse_profile(documents[0], inventory, source=source)
    return dataclasses.replace(profile, source_text=text)


def parse_profile(data: Any, inventory: Inventory | None = None, *, source: str | None = None) -> NodeProfile:
    """Validate an already-loaded profile mapping. Raises :class:`ProfileError` with every problem."""
    parser = _Parser(inventory)
    profile = parser.profile(data)
    if parser.errors or profile is None:
        raise ProfileError(parser.errors or ["not a NodeProfile"], source=source)
    return profile


# --- the parser ------------------------------------------------------------------------------

_MISSING = object()
ROOT_PATH = "(profile)"


class _Parser:
    """Walks the document once, collecting ``path: message`` errors instead of stopping at the first."""

    def __init__(self, inventory: Inventory | None) -> None:
        self.inventory = inventory
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    # generic shapes

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict | None:
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping with fields {', '.join(allowed)}, got {_kind(value)}")
            return None
        prefix = "" if path == ROOT_PATH else f"{path}."
        for key in value:
            if key not in allowed:
                self.error(f"{prefix}{key}", f"unknown field (allowed here: {', '.join(allowed)})")
        for key in required:
            if key not in value:
                self.error(f"{prefix}{key}", "required field is missing")
        return value

    def string(self, value: Any, path: str, form: str, pattern: re.Pattern[str] | None = None,
               max_len: int | None = None) -> str | None:
        if not isinstance(value, str) or (pattern is not None and not pattern.match(value)) or \
                (max_len is not None and len(value) > max_len):
            self.error(path, f"{_shown(value)} is not {form}")
            return None
        return value

    def boolean(self, value: Any, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.error(path, f"{_shown(value)} is not a boolean (true or false)")
            return None
        return value

    def integer(self, value: Any, path: str, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.error(path, f"{_shown(value)} is not an integer from {low} to {high}")
            return None
        return value

    def number(self, value: Any, path: str, low: float, high: float) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            self.error(path, f"{_shown(value)} is not a number from {low:g} to {high:g}")
            return None
        return float(value)

    def too_long(self, value: list | dict, path: str) -> bool:
        """True (and an error) when a list or map has more than :data:`MAX_LIST_ITEMS` entries."""
        if len(value) <= MAX_LIST_ITEMS:
            return False
        self.error(path, f"{len(value)} entries; at most {MAX_LIST_ITEMS} are accepted")
        return True

    def label_map(self, value: Any, path: str) -> dict[str, str]:
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping of label keys to string values, got {_kind(value)}")
            return {}
        if self.too_long(value, path):
            return {}
        result: dict[str, str] = {}
        for key, item in value.items():
            if self.label_key(key, f"{path}[{key!r}]") is None:
                continue
            if self.label_value(item, f"{path}.{key}") is not None:
                result[key] = item
        return result

    def label_key(self, key: Any, path: str) -> str | None:
        if (error := label_key_error(key)) is not None:
            self.error(path, error)
            return None
        return str(key)

    def label_value(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            self.error(path, f"{_shown(value)} is not a string; quote it in YAML (\"true\", \"2\")")
            return None
        if (error := label_value_error(value)) is not None:
            self.error(path, error)
            return None
        return value

    def cpulist(self, value: Any, path: str) -> list[int] | None:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.error(path, f"{_shown(value)} is not {CPULIST_FORM}")
            return None
        online = self.inventory.cpu.online if self.inventory is not None else []
        try:
            # Bounded before expansion (MAX_CPU_ID): "0-999999999" is an error, not gigabytes.
            cpus = parse_cpulist(value)
        except CpuIdRangeError as exc:
            where = (f"does not exist on this host (online: {format_cpulist(online)})" if online
                     else f"is above the highest CPU id accepted ({MAX_CPU_ID})")
            self.error(path, f"CPU {exc.cpu} {where}")
            return None
        except ValueError as exc:
            self.error(path, str(exc))
            return None
        if not cpus:
            self.error(path, f"empty CPU list; give {CPULIST_FORM} or leave the field out")
            return None
        if online:
            missing = sorted(set(cpus) - set(online))
            if missing:
                self.error(path, f"CPUs {format_cpulist(missing)} do not exist on this host "
                                 f"(online: {format_cpulist(online)})")
                return None
        return cpus

    def page_size(self, value: Any, path: str) -> int | None:
        try:
            kb = parse_page_size_kb(str(value)) if isinstance(value, str) else None
        except ValueError:
            kb = None
        if kb is None:
            self.error(path, f"{_shown(value)} is not {SIZE_FORM}")
            return None
        if self.inventory is not None:
            offered = _host_page_sizes(self.inventory)
            if offered and page_size_name(kb) not in offered:
                self.error(path, f"{page_size_name(kb)} pages are not offered by this host's kernel "
                                 f"(offered: {', '.join(offered)})")
                return None
        return kb

    def quantity(self, value: Any, path: str) -> int | None:
        size = parse_quantity_bytes(value)
        if size is None:
            self.error(path, f"{_shown(value)} is not {QUANTITY_FORM}")
        return size

    # the document

    def profile(self, data: Any) -> NodeProfile | None:
        doc = self.mapping(data, ROOT_PATH, ("apiVersion", "kind", "metadata", "spec"),
                           ("apiVersion", "kind", "metadata", "spec"))
        if doc is None:
            return None
        if "apiVersion" in doc and doc["apiVersion"] != API_VERSION:
            self.error("apiVersion", f"{_shown(doc['apiVersion'])} is not {API_VERSION!r}")
        if "kind" in doc and doc["kind"] != KIND:
            self.error("kind", f"{_shown(doc['kind'])} is not {KIND!r}")
        name = self.metadata(doc.get("metadata", _MISSING))
        spec = doc.get("spec", _MISSING)
        if spec is _MISSING:
            return None
        spec = {} if spec is None else spec
        fields = ("nodeSelector", "cpu", "hugepages", "gpu", "ksm", "kernel", "labels", "taints",
                  "rebootStrategy", "rebootSentinel", "kubelet", "workloadClasses")
        if self.mapping(spec, "spec", fields) is None:
            return None
        profile = NodeProfile(
            name=name or "",
            node_selector=self.node_selector(spec["nodeSelector"]) if "nodeSelector" in spec else {},
            labels=self.label_map(spec["labels"], "spec.labels") if "labels" in spec else {},
            taints=self.taints(spec["taints"]) if "taints" in spec else [],
            gpu_passthrough=self.gpu(spec["gpu"]) if "gpu" in spec else [],
            gpu_nvswitch=self.nvswitch(spec["gpu"]) if "gpu" in spec else "host",
            gpu_vgpu=parse_vgpu(self, spec["gpu"]["vgpu"]) if isinstance(spec.get("gpu"), dict)
            and "vgpu" in spec["gpu"] else None,
            cpu=self.cpu(spec["cpu"]) if "cpu" in spec else None,
            hugepages=self.hugepages(spec["hugepages"]) if "hugepages" in spec else None,
            ksm=self.ksm(spec["ksm"]) if "ksm" in spec else None,
            kernel=self.kernel(spec["kernel"]) if "kernel" in spec else None,
            kubelet=self.kubelet(spec["kubelet"]) if "kubelet" in spec else None,
            workload_classes=self.workload_classes(spec["workloadClasses"]) if "workloadClasses" in spec else None,
            **self.reboot(spec),
        )
        return profile

    def reboot(self, spec: dict[str, Any]) -> dict[str, str]:
        """spec.rebootStrategy (none | kured) and spec.rebootSentinel (kured's sentinel path)."""
        strategy = "none"
        if "rebootStrategy" in spec:
            strategy = self.string(spec["rebootStrategy"], "spec.rebootStrategy",
                                   "one of " + ", ".join(REBOOT_STRATEGIES)) or "none"
            if strategy not in REBOOT_STRATEGIES:
                self.error("spec.rebootStrategy", f"{_shown(strategy)} is not one of {', '.join(REBOOT_STRATEGIES)}")
                strategy = "none"
        sentinel = DEFAULT_REBOOT_SENTINEL
        if "rebootSentinel" in spec:
            sentinel = self.string(spec["rebootSentinel"], "spec.rebootSentinel",
                                   "an absolute path without '..' (kured's --reboot-sentinel)",
                                   _ABSOLUTE_PATH) or DEFAULT_REBOOT_SENTINEL
            if "rebootStrategy" in spec and strategy != "kured":
                self.error("spec.rebootSentinel", "only meaningful with rebootStrategy: kured")
        return {"reboot_strategy": strategy, "reboot_sentinel": sentinel}

    def metadata(self, value: Any) -> str | None:
        if value is _MISSING:
            return None
        meta = self.mapping(value, "metadata", ("name", "labels", "annotations"), ("name",))
        if meta is None or "name" not in meta:
            return None
        return self.string(meta["name"], "metadata.name", NAME_FORM, DNS_SUBDOMAIN, 253)

    def node_selector(self, value: Any) -> dict[str, str]:
        selector = self.mapping(value, "spec.nodeSelector", ("matchLabels",))
        if not selector or "matchLabels" not in selector:
            return {}
        return self.label_map(selector["matchLabels"], "spec.nodeSelector.matchLabels")

    def taints(self, value: Any) -> list[Taint]:
        if not isinstance(value, list):
            self.error("spec.taints", f"expected a list of {{key, value, effect}}, got {_kind(value)}")
            return []
        if self.too_long(value, "spec.taints"):
            return []
        taints: list[Taint] = []
        for i, item in enumerate(value):
            path = f"spec.taints[{i}]"
            entry = self.mapping(item, path, ("key", "value", "effect"), ("key", "effect"))
            if entry is None:
                continue
            key = self.label_key(entry.get("key"), f"{path}.key") if "key" in entry else None
            val = self.label_value(entry.get("value", ""), f"{path}.value")
            effect = None
            if "effect" in entry:
                effect = entry["effect"] if entry["effect"] in TAINT_EFFECTS else None
                if effect is None:
                    self.error(f"{path}.effect", f"{_shown(entry['effect'])} is not {TAINT_EFFECT_FORM}")
            if key is not None and val is not None and effect is not None:
                taints.append(Taint(key, val, effect))
        return taints

    def nvswitch(self, value: Any) -> str:
        """spec.gpu.nvswitch: host | passthrough (the gpu mapping itself is checked by :meth:`gpu`)."""
        if not isinstance(value, dict) or "nvswitch" not in value:
            return "host"
        mode = self.string(value["nvswitch"], "spec.gpu.nvswitch", NVSWITCH_FORM)
        if mode is not None and mode not in NVSWITCH_MODES:
            self.error("spec.gpu.nvswitch", f"{_shown(mode)} is not {NVSWITCH_FORM}")
            return "host"
        return mode or "host"

    def gpu(self, value: Any) -> list[GpuSelector]:
        gpu = self.mapping(value, "spec.gpu", GPU_FIELDS)
        if not gpu or "passthrough" not in gpu:
            return []
        items = gpu["passthrough"]
        if not isinstance(items, list):
            self.error("spec.gpu.passthrough", f"expected a list of {{vendor, device, address}}, got {_kind(items)}")
            return []
        if self.too_long(items, "spec.gpu.passthrough"):
            return []
        selectors: list[GpuSelector] = []
        for i, item in enumerate(items):
            path = f"spec.gpu.passthrough[{i}]"
            entry = self.mapping(item, path, ("vendor", "device", "address"))
            if entry is None:
                continue
            if not entry:
                self.error(path, "give at least one of vendor, device, address")
                continue
            if "device" in entry and "vendor" not in entry and "address" not in entry:
                self.error(f"{path}.vendor", "required with device (device ids are per vendor)")
            vendor = self.pci_id(entry["vendor"], f"{path}.vendor") if "vendor" in entry else None
            device = self.pci_id(entry["device"], f"{path}.device") if "device" in entry else None
            address = self.pci_address(entry["address"], f"{path}.address") if "address" in entry else None
            selectors.append(GpuSelector(vendor, device, address))
        return selectors

    def pci_id(self, value: Any, path: str) -> str | None:
        match = _HEX4.match(value) if isinstance(value, str) else None
        if not match:
            self.error(path, f"{_shown(value)} is not {PCI_ID_FORM}")
            return None
        return match.group(1).lower()

    def pci_address(self, value: Any, path: str) -> str | None:
        match = _PCI_ADDRESS.match(value) if isinstance(value, str) else None
        if not match:
            self.error(path, f"{_shown(value)} is not {PCI_ADDRESS_FORM}")
            return None
        domain = match.group(1) or "0000"
        return f"{domain}:{match.group(2)}:{match.group(3)}.{match.group(4)}".lower()

    def cpu(self, value: Any) -> CpuSpec | None:
        cpu = self.mapping(value, "spec.cpu", ("reserved", "isolated", "governor"))
        if cpu is None:
            return None
        reserved = self.cpulist(cpu["reserved"], "spec.cpu.reserved") if "reserved" in cpu else None
        isolated = self.cpulist(cpu["isolated"], "spec.cpu.isolated") if "isolated" in cpu else None
        governor = None
        if "governor" in cpu:
            governor = self.string(cpu["governor"], "spec.cpu.governor",
                                   "a cpufreq governor name such as 'performance' or 'schedutil'", _GOVERNOR)
        if reserved and isolated:
            both = sorted(set(reserved) & set(isolated))
            if both:
                self.error("spec.cpu.isolated", f"CPUs {format_cpulist(both)} are also in spec.cpu.reserved; "
                                                "a CPU is either housekeeping or isolated")
        return CpuSpec(reserved, isolated, governor)

    def hugepages(self, value: Any) -> HugepagesSpec | None:
        fields = ("defaultSize", "pages", "reserveHostMemory", "allocationTimeoutSeconds")
        spec = self.mapping(value, "spec.hugepages", fields)
        if spec is None:
            return None
        default_kb = (self.page_size(spec["defaultSize"], "spec.hugepages.defaultSize")
                      if "defaultSize" in spec else None)
        floor_percent: float = DEFAULT_FLOOR_PERCENT
        floor_bytes = DEFAULT_FLOOR_BYTES
        if "reserveHostMemory" in spec:
            path = "spec.hugepages.reserveHostMemory"
            reserve = self.mapping(spec["reserveHostMemory"], path, ("percent", "minimum"))
            if reserve:
                if "percent" in reserve:
                    floor_percent = self.number(reserve["percent"], f"{path}.percent", 0, 90) or 0.0
                if "minimum" in reserve:
                    floor_bytes = self.quantity(reserve["minimum"], f"{path}.minimum") or 0
        timeout = DEFAULT_ALLOCATION_TIMEOUT_S
        if "allocationTimeoutSeconds" in spec:
            timeout = self.number(spec["allocationTimeoutSeconds"], "spec.hugepages.allocationTimeoutSeconds",
                                  0, 3600) or 0.0
        pages: list[HugepageRequest] = []
        raw_pages = spec.get("pages", [])
        if not isinstance(raw_pages, list):
            self.error("spec.hugepages.pages", f"expected a list of {{size, count, numaNode}}, got {_kind(raw_pages)}")
            raw_pages = []
        if self.too_long(raw_pages, "spec.hugepages.pages"):
            raw_pages = []
        for i, item in enumerate(raw_pages):
            request = self.page_request(item, i)
            if request is not None:
                pages.append(request)
        self.check_page_overlaps(pages)
        return HugepagesSpec(pages, default_kb, floor_percent, floor_bytes, timeout)

    def page_request(self, item: Any, i: int) -> HugepageRequest | None:
        path = f"spec.hugepages.pages[{i}]"
        entry = self.mapping(item, path, ("size", "count", "numaNode"), ("size", "count"))
        if entry is None:
            return None
        size_kb = self.page_size(entry["size"], f"{path}.size") if "size" in entry else None
        count = self.integer(entry["count"], f"{path}.count", 0, 10_000_000) if "count" in entry else None
        node = None
        if "numaNode" in entry:
            node = self.integer(entry["numaNode"], f"{path}.numaNode", 0, 4095)
            if node is not None and self.inventory is not None and self.inventory.numa_node(node) is None:
                ids = ", ".join(str(n.id) for n in self.inventory.numa) or "none"
                self.error(f"{path}.numaNode", f"NUMA node {node} does not exist on this host (nodes: {ids})")
                return None
            if node is None:
                return None
        if size_kb is None or count is None:
            return None
        return HugepageRequest(size_kb, count, node, i)

    def check_page_overlaps(self, pages: list[HugepageRequest]) -> None:
        seen: dict[tuple[int, int | None], int] = {}
        for request in pages:
            key = (request.size_kb, request.numa_node)
            where = "spread over all nodes" if request.numa_node is None else f"on NUMA node {request.numa_node}"
            if key in seen:
                self.error(f"spec.hugepages.pages[{request.index}]",
                           f"duplicates pages[{seen[key]}] ({request.size} {where}); give one entry per size and node")
                continue
            seen[key] = request.index
        for request in pages:
            if request.numa_node is None and any(s == request.size_kb and n is not None for s, n in seen):
                self.error(f"spec.hugepages.pages[{request.index}].numaNode",
                           f"{request.size} is given both per node and without numaNode; "
                           "give numaNode on every entry of a size, or on none")

    def ksm(self, value: Any) -> KsmSpec | None:
        spec = self.mapping(value, "spec.ksm", ("enabled", "pagesToScan", "sleepMillisecs"), ("enabled",))
        if spec is None or "enabled" not in spec:
            return None
        enabled = self.boolean(spec["enabled"], "spec.ksm.enabled")
        pages = self.integer(spec["pagesToScan"], "spec.ksm.pagesToScan", 1, 1_000_000) \
            if "pagesToScan" in spec else None
        sleep = self.integer(spec["sleepMillisecs"], "spec.ksm.sleepMillisecs", 1, 3_600_000) \
            if "sleepMillisecs" in spec else None
        if enabled is False:
            for key in ("pagesToScan", "sleepMillisecs"):
                if key in spec:
                    self.error(f"spec.ksm.{key}", "only meaningful with enabled: true")
        if enabled is None:
            return None
        return KsmSpec(enabled, pages, sleep)

    def kernel(self, value: Any) -> KernelSpec | None:
        spec = self.mapping(value, "spec.kernel", ("iommu", "additionalArgs", "realtimeScheduling"))
        if spec is None:
            return None
        iommu = self.boolean(spec["iommu"], "spec.kernel.iommu") if "iommu" in spec else None
        realtime = (self.boolean(spec["realtimeScheduling"], "spec.kernel.realtimeScheduling")
                    if "realtimeScheduling" in spec else None)
        args: list[str] = []
        raw = spec.get("additionalArgs", [])
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            self.error("spec.kernel.additionalArgs", f"expected a list of kernel arguments, got {_kind(raw)}")
            raw = []
        if self.too_long(raw, "spec.kernel.additionalArgs"):
            raw = []
        for i, arg in enumerate(raw):
            path = f"spec.kernel.additionalArgs[{i}]"
            text = self.string(arg, path, BOOT_ARG_FORM, _BOOT_ARG, 1024)
            if text is None:
                continue
            key = text.split("=", 1)[0]
            if key in MANAGED_BOOT_ARGS:
                self.error(path, f"{key}= is computed by nodeagent from spec.cpu, spec.hugepages and "
                                 "spec.kernel.iommu; set it there")
                continue
            args.append(text)
        return KernelSpec(iommu, args, realtime)

    def workload_classes(self, value: Any) -> dict[str, Any] | None:
        """spec.workloadClasses: validated against the default classes (its own may extend them or each other)."""
        from nodeagent.workloads import WorkloadClassesError, default_table

        try:
            default_table().overlay(value, "spec.workloadClasses", source="profile")
        except WorkloadClassesError as exc:
            self.errors += exc.errors
            return None
        return dict(value)

    def kubelet(self, value: Any) -> KubeletSpec | None:
        """spec.kubelet: policy names exactly as the kubelet spells them, checked against each other."""
        fields = ("manage", "cpuManagerPolicy", "cpuManagerPolicyOptions", "reservedSystemCPUs",
                  "topologyManagerPolicy", "topologyManagerScope", "memoryManagerPolicy", "reservedMemory")
        spec = self.mapping(value, "spec.kubelet", fields)
        if spec is None:
            return None
        manage = self.boolean(spec["manage"], "spec.kubelet.manage") if "manage" in spec else True
        if manage is False:
            for key in spec:
                if key != "manage":
                    self.error(f"spec.kubelet.{key}", "only meaningful with manage: true (or without manage)")
            return KubeletSpec(manage=False)

        def choice(key: str, accepted: tuple[str, ...]) -> str | None:
            if key not in spec:
                return None
            if spec[key] not in accepted:
                self.error(f"spec.kubelet.{key}", f"{_shown(spec[key])} is not one of {', '.join(accepted)}")
                return None
            return str(spec[key])

        cpu_policy = choice("cpuManagerPolicy", CPU_MANAGER_POLICIES)
        options = self.cpu_manager_options(spec["cpuManagerPolicyOptions"]) \
            if "cpuManagerPolicyOptions" in spec else {}
        if options and cpu_policy == "none":
            self.error("spec.kubelet.cpuManagerPolicyOptions", "only meaningful with cpuManagerPolicy: static")
        reserved = self.cpulist(spec["reservedSystemCPUs"], "spec.kubelet.reservedSystemCPUs") \
            if "reservedSystemCPUs" in spec else None
        memory_policy = choice("memoryManagerPolicy", MEMORY_MANAGER_POLICIES)
        reserved_memory = self.reserved_memory(spec["reservedMemory"]) if "reservedMemory" in spec else None
        if "reservedMemory" in spec and memory_policy != "Static":
            self.error("spec.kubelet.reservedMemory", "only meaningful with memoryManagerPolicy: Static")
        return KubeletSpec(
            manage=True, cpu_manager_policy=cpu_policy, cpu_manager_policy_options=options,
            reserved_system_cpus=reserved,
            topology_manager_policy=choice("topologyManagerPolicy", TOPOLOGY_MANAGER_POLICIES),
            topology_manager_scope=choice("topologyManagerScope", TOPOLOGY_MANAGER_SCOPES),
            memory_manager_policy=memory_policy, reserved_memory=reserved_memory,
        )

    def cpu_manager_options(self, value: Any) -> dict[str, str]:
        path = "spec.kubelet.cpuManagerPolicyOptions"
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping of option names to \"true\" or \"false\", got {_kind(value)}")
            return {}
        options: dict[str, str] = {}
        for name, raw in value.items():
            if name not in CPU_MANAGER_POLICY_OPTIONS:
                self.error(f"{path}.{name}", f"unknown option (accepted: {', '.join(CPU_MANAGER_POLICY_OPTIONS)})")
                continue
            text = ("true" if raw else "false") if isinstance(raw, bool) else raw
            if text not in ("true", "false"):
                self.error(f"{path}.{name}", f"{_shown(raw)} is not \"true\" or \"false\"")
                continue
            options[str(name)] = str(text)
        return options

    def reserved_memory(self, value: Any) -> list[ReservedMemory] | None:
        path = "spec.kubelet.reservedMemory"
        if not isinstance(value, list) or not value:
            self.error(path, f"expected a non-empty list of {{numaNode, memory}}, got {_kind(value)}")
            return None
        if self.too_long(value, path):
            return None
        entries: list[ReservedMemory] = []
        seen: set[int] = set()
        for i, item in enumerate(value):
            entry = self.mapping(item, f"{path}[{i}]", ("numaNode", "memory"), ("numaNode", "memory"))
            if entry is None or "numaNode" not in entry or "memory" not in entry:
                continue
            node = self.integer(entry["numaNode"], f"{path}[{i}].numaNode", 0, 4095)
            memory = self.quantity(entry["memory"], f"{path}[{i}].memory")
            if node is None or memory is None:
                continue
            if self.inventory is not None and self.inventory.numa and self.inventory.numa_node(node) is None:
                ids = ", ".join(str(n.id) for n in self.inventory.numa)
                self.error(f"{path}[{i}].numaNode", f"NUMA node {node} does not exist on this host (nodes: {ids})")
                continue
            if node in seen:
                self.error(f"{path}[{i}].numaNode", f"NUMA node {node} is given twice; one entry per node")
                continue
            seen.add(node)
            entries.append(ReservedMemory(node, memory))
        return entries


def _host_page_sizes(inventory: Inventory) -> list[str]:
    sizes: dict[str, int] = {}
    for node in inventory.numa:
        for name, pool in node.hugepages.items():
            sizes[name] = pool.size_kb
    for name, pool in inventory.memory.hugepages.items():
        sizes[name] = pool.size_kb
    return [name for name, _ in sorted(sizes.items(), key=lambda item: item[1])]


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:80])
    if isinstance(value, dict | list):
        return _kind(value)
    return repr(value)
