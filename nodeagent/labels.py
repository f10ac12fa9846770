"""Inventory (+ NodeProfile) → the node labels and taints of docs/labels.md.

A pure function of its inputs: no host reads, no Kubernetes. The publisher (``nodeagent.k8s``)
turns a :class:`LabelSet` into a minimal patch of the Node.

Three families of labels:

* **NFD-owned** — names node-feature-discovery publishes itself (``cpu-cpuid.<FLAG>``,
  ``cpu-hardware_multithreading``, ``memory-numa``, only ever ``"true"`` as NFD writes it). Computed
  the way NFD computes them, so that VM manifests written for NFD select the same nodes. Where NFD
  runs they are NFD's: ``LabelConfig(nfd_auto=True)`` (``--nfd-labels=auto``, the CLI's default)
  lets the publisher leave them to NFD once the Node shows NFD at work (:func:`nfd_detected`);
  ``nfd_compatible=False`` (``off``) never computes them.
* **Recipe-compatible** — names the reference VM recipes select on that no upstream project
  defines (``feature.node.kubernetes.io/numa``, ``cpu-cpuid.RTSCHED``,
  ``topology.kubernetes.io/numa-nodes``, bare ``realtime``). Published unless
  ``recipe_compatible=False``; always mirrored under nodeagent's prefix (``numa``, ``rt-sched``,
  ``numa-nodes``, ``realtime``), so new manifests need not use another project's namespace.
  ``nvidia.com/gpu.workload.config`` (GPU Operator's own switch) is published beside them.
* **nodeagent's own**, under a changeable prefix (``nodeagent.io`` by default).

The profile's labels are added on top. A profile may not set a key nodeagent computes (the
contract's ``realtime`` rule would otherwise be lost): such a label is dropped with a warning.
Other keys, in nodeagent's prefix too (``nodeagent.io/pool``), are the profile's to set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from nodeagent.contract import DEFAULT_LABEL_PREFIX, WORKLOADS
from nodeagent.gpulabels import FIXED_NAMES as FIXED_GPU_NAMES
from nodeagent.gpulabels import gpu_labels, is_gpu_label_name
from nodeagent.gpuselect import SelectorLike, selected_gpus
from nodeagent.inventory import NVIDIA_VENDOR_ID, Inventory, Plain
from nodeagent.kubenames import TAINT_EFFECT_FORM, TAINT_EFFECTS, label_key_error, label_value_error, prefix_error
from nodeagent.vgpupool import is_vgpu_type_label, vgpu_labels

if TYPE_CHECKING:
    from nodeagent.workloads import Readiness, WorkloadTable

NFD_PREFIX = "feature.node.kubernetes.io"
DEFAULT_PREFIX = DEFAULT_LABEL_PREFIX

# /proc/cpuinfo flag → the feature name NFD labels it with. NFD takes its names from
# github.com/klauspost/cpuid (cpuid.CPU.FeatureSet()), which differ from the kernel's for a few
# flags (sha_ni → SHA, aes → AESNI, fma → FMA3, the underscores of avx512_*/amx_*).
# Only the flags docs/labels.md names are published.
CPUID_FLAGS: dict[str, str] = {
    "avx2": "AVX2",
    "avx512f": "AVX512F",
    "avx512dq": "AVX512DQ",
    "avx512bw": "AVX512BW",
    "avx512cd": "AVX512CD",
    "avx512vl": "AVX512VL",
    "avx512_bf16": "AVX512BF16",
    "avx512_vnni": "AVX512VNNI",
    "amx_bf16": "AMXBF16",
    "amx_int8": "AMXINT8",
    "amx_tile": "AMXTILE",
    "fma": "FMA3",
    "sha_ni": "SHA",
    "aes": "AESNI",
    "vmx": "VMX",
    "svm": "SVM",
}

# Where NFD is seen at work: nfd-master lists the labels it wrote in this Node annotation (names in
# its default namespace without the prefix).
NFD_FEATURE_LABELS_ANNOTATION = "nfd.node.kubernetes.io/feature-labels"
NFD_MODES = ("auto", "on", "off")


def nfd_owned_keys() -> frozenset[str]:
    """Every key node-feature-discovery itself publishes that nodeagent can compute."""
    keys = {f"{NFD_PREFIX}/cpu-cpuid.{name}" for name in CPUID_FLAGS.values()}
    keys |= {f"{NFD_PREFIX}/cpu-hardware_multithreading", f"{NFD_PREFIX}/memory-numa"}
    return frozenset(keys)


def nfd_listed_labels(annotations: Mapping[str, str]) -> set[str] | None:
    """The label keys NFD says it wrote on a Node (None: the Node carries no NFD annotation)."""
    raw = annotations.get(NFD_FEATURE_LABELS_ANNOTATION)
    if raw is None:
        return None
    return {item if "/" in item else f"{NFD_PREFIX}/{item}" for item in parse_owned(raw)}


def nfd_detected(annotations: Mapping[str, str], *, node_features: bool = False) -> bool:
    """NFD runs for this Node: its feature-labels annotation is there, or NodeFeature objects name it."""
    return node_features or nfd_listed_labels(annotations) is not None


def label_config_for(mode: str, *, prefix: str = DEFAULT_PREFIX, recipe_compatible: bool = True) -> LabelConfig:
    """The LabelConfig of ``--nfd-labels=auto|on|off``."""
    if mode not in NFD_MODES:
        raise LabelError(f"--nfd-labels: {mode!r} is not one of auto, on, off")
    return LabelConfig(prefix=prefix, nfd_compatible=mode != "off", nfd_auto=mode == "auto",
                       recipe_compatible=recipe_compatible)


class LabelError(ValueError):
    """A label key, label value, taint or prefix Kubernetes would reject; the message names it."""


@dataclass(frozen=True)
class LabelConfig:
    """What a cluster wants published.

    ``nfd_compatible``: compute the labels node-feature-discovery itself publishes. ``nfd_auto``:
    the publisher leaves those to NFD on a Node where NFD is seen at work (``--nfd-labels=auto``).
    ``recipe_compatible``: publish the recipe-compatible keys no upstream project defines (their
    ``nodeagent.io/`` mirrors are always published). ``prefix``: the namespace of nodeagent's own
    labels and annotations.
    """

    prefix: str = DEFAULT_PREFIX
    nfd_compatible: bool = True
    nfd_auto: bool = False
    recipe_compatible: bool = True

    def __post_init__(self) -> None:
        if error := prefix_error(self.prefix):
            raise LabelError(f"label prefix: {error}")

    def own(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    @property
    def owned_labels_annotation(self) -> str:
        """Lists, comma-separated, the labels nodeagent set (docs/labels.md)."""
        return self.own("owned-labels")

    @property
    def owned_taints_annotation(self) -> str:
        """Lists, comma-separated as ``key:Effect``, the taints nodeagent set."""
        return self.own("owned-taints")


def format_owned(items: Iterable[str]) -> str:
    """An ownership annotation's value: the label keys (or taint ``key:Effect`` identities), sorted, comma-separated."""
    return ",".join(sorted(set(items)))


def parse_owned(text: str | None) -> set[str]:
    """What an ownership annotation lists (empty when it is absent); tolerant of spaces and empty items."""
    return {item.strip() for item in (text or "").split(",") if item.strip()}


@dataclass(frozen=True, order=True)
class NodeTaint(Plain):
    """A taint as it appears in ``Node.spec.taints``; identified by ``(key, effect)``."""

    key: str
    value: str
    effect: str

    @property
    def identity(self) -> str:
        return f"{self.key}:{self.effect}"

    def to_api(self) -> dict[str, str]:
        body = {"key": self.key, "effect": self.effect}
        if self.value:
            body["value"] = self.value
        return body

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True)
class LabelSet(Plain):
    """What nodeagent publishes on its Node: labels, taints, and why anything was left out."""

    labels: dict[str, str]
    taints: list[NodeTaint] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def owned_annotations(self, config: LabelConfig) -> dict[str, str]:
        """The ownership annotations the publisher writes beside the labels and taints."""
        return {
            config.owned_labels_annotation: format_owned(self.labels),
            config.owned_taints_annotation: format_owned(t.identity for t in self.taints),
        }


# --- the profile, as far as labels need it (nodeagent.profile.NodeProfile satisfies this) -----


class _TaintLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def value(self) -> str | None: ...
    @property
    def effect(self) -> str: ...


class ProfileLike(Protocol):
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def taints(self) -> Sequence[_TaintLike]: ...
    @property
    def gpu_passthrough(self) -> Sequence[SelectorLike]: ...


# --- computing ---------------------------------------------------------------------------------


def _flag(value: bool) -> str:
    return "true" if value else "false"


def compute_labels(inv: Inventory, profile: ProfileLike | None = None, *,
                   config: LabelConfig | None = None,
                   readiness: Mapping[str, Readiness] | None = None,
                   workloads: WorkloadTable | None = None) -> LabelSet:
    """The labels and taints of docs/labels.md for this node.

    ``readiness`` defaults to the readiness of ``inv`` for the workload classes in force (the one
    definition of it, :mod:`nodeagent.workloads`); pass it only to label a readiness computed elsewhere.
    ``workloads``: the classes in force (:func:`nodeagent.workloads.table_for`); None: the default classes
    with the profile's ``spec.workloadClasses`` over them.

    Raises :class:`LabelError` when the profile carries a label or taint Kubernetes would reject, and
    :class:`~nodeagent.workloads.WorkloadClassesError` when its classes cannot be laid over the defaults.
    """
    config = config or LabelConfig()
    if readiness is None:
        from nodeagent.workloads import table_for

        readiness = (table_for(None, profile) if workloads is None else workloads).readiness(inv)
    warnings: list[str] = []
    labels = _compatible_labels(inv, config, readiness)
    labels.update(_own_labels(inv, config, readiness))
    vgpu, vgpu_warnings = vgpu_labels(inv, config.own)
    labels.update(vgpu)
    warnings.extend(vgpu_warnings)
    # GPU Operator's switch to its VM-passthrough stack: set only where an NVIDIA GPU the profile
    # passes through (prep's selection) is present here and actually on a vfio driver — not because
    # the selector names vendor 10de, nor before the GPU is bound.
    if profile is not None and any(g.vendor_id == NVIDIA_VENDOR_ID and g.driver is not None and "vfio" in g.driver
                                   for g in selected_gpus(profile, inv)):
        labels["nvidia.com/gpu.workload.config"] = "vm-passthrough"

    for key, value in list(labels.items()):
        if error := label_value_error(value):  # only discovered strings (the governor) can fail
            warnings.append(f"label {key} not published: {error}")
            del labels[key]

    taints: list[NodeTaint] = []
    if profile is not None:
        _add_profile_labels(labels, profile.labels, config, warnings, readiness)
        taints = profile_taints(profile.taints)
    return LabelSet(dict(sorted(labels.items())), taints, warnings)


def _compatible_labels(inv: Inventory, config: LabelConfig,
                       readiness: Mapping[str, Readiness]) -> dict[str, str]:
    numa_nodes = len(inv.numa)
    labels: dict[str, str] = {}
    if config.nfd_compatible:
        flags = set(inv.cpu.flags)
        for proc_flag, nfd_name in CPUID_FLAGS.items():
            if proc_flag in flags:
                labels[f"{NFD_PREFIX}/cpu-cpuid.{nfd_name}"] = "true"
        labels[f"{NFD_PREFIX}/cpu-hardware_multithreading"] = _flag(_hardware_multithreading(inv))
        if numa_nodes > 1:  # NFD publishes it only when true; DoesNotExist selectors rely on that
            labels[f"{NFD_PREFIX}/memory-numa"] = "true"
    realtime = readiness.get("realtime")
    recipe = {f"{NFD_PREFIX}/numa": _flag(numa_nodes > 1), "topology.kubernetes.io/numa-nodes": str(numa_nodes)}
    if inv.kernel.realtime:
        recipe[f"{NFD_PREFIX}/cpu-cpuid.RTSCHED"] = "true"
    if realtime is not None and realtime.ready:
        recipe["realtime"] = "true"
    if config.recipe_compatible:
        labels.update(recipe)
    # The same facts in nodeagent's own namespace, whatever the switch says.
    mirrors = {f"{NFD_PREFIX}/numa": "numa", "topology.kubernetes.io/numa-nodes": "numa-nodes",
               f"{NFD_PREFIX}/cpu-cpuid.RTSCHED": "rt-sched", "realtime": "realtime"}
    for key, own in mirrors.items():
        if key in recipe:
            labels[config.own(own)] = recipe[key]
    return labels


def _hardware_multithreading(inv: Inventory) -> bool:
    """As NFD decides it: some CPU has an online thread sibling (SMT present and not disabled)."""
    if inv.cpu.thread_siblings:
        return any(len(siblings) > 1 for siblings in inv.cpu.thread_siblings)
    return inv.cpu.threads_per_core > 1


def _own_labels(inv: Inventory, config: LabelConfig, readiness: Mapping[str, Readiness]) -> dict[str, str]:
    own = config.own
    passthrough = len(inv.passthrough_gpus)
    labels = {
        own("kvm"): _flag(inv.kvm.available),
        own("kvm-nested"): _flag(bool(inv.kvm.nested)),
        own("iommu"): _flag(inv.iommu.enabled),
        own("rt-kernel"): _flag(inv.kernel.realtime),
        own("ksm"): _flag(inv.ksm.running),
        own("hugepages-2Mi"): _flag(inv.hugepages_configured("2Mi")),
        own("hugepages-1Gi"): _flag(inv.hugepages_configured("1Gi")),
        own("isolated-cpus"): str(len(inv.cpu.isolated)),
        own("gpu-passthrough"): _flag(passthrough > 0),
        own("gpu-passthrough-count"): str(passthrough),
        own("reboot-required"): _flag(inv.prep.reboot_required),
        own("kubelet-restart-required"): _flag(inv.prep.kubelet_restart_required),
    }
    if inv.cpu.governor:
        labels[own("cpu-governor")] = inv.cpu.governor
    labels.update(gpu_labels(inv, own))
    for workload, ready in readiness.items():  # every class of the table in force
        labels[own(f"ready-{workload}")] = _flag(ready.ready)
    return labels


def computed_keys(config: LabelConfig, workloads: Iterable[str] = WORKLOADS) -> frozenset[str]:
    """Every key nodeagent may compute, present on this node or not: a profile may not set these.

    ``workloads``: the workload classes in force (their ``ready-<class>`` labels), the defaults unless given.
    """
    keys = {f"{NFD_PREFIX}/cpu-cpuid.{name}" for name in CPUID_FLAGS.values()}
    keys |= {f"{NFD_PREFIX}/cpu-cpuid.RTSCHED", f"{NFD_PREFIX}/cpu-hardware_multithreading",
             f"{NFD_PREFIX}/memory-numa", f"{NFD_PREFIX}/numa", "topology.kubernetes.io/numa-nodes", "realtime",
             "nvidia.com/gpu.workload.config"}
    own = ("kvm", "kvm-nested", "iommu", "rt-kernel", "ksm", "hugepages-2Mi", "hugepages-1Gi", "isolated-cpus",
           "numa", "numa-nodes", "rt-sched", "realtime",
           "cpu-governor", "gpu-passthrough", "gpu-passthrough-count", "reboot-required", "kubelet-restart-required",
           *FIXED_GPU_NAMES,
           "vgpu", "vgpu-gpus", "vgpu-instances", "vgpu-available",
           *(f"ready-{w}" for w in (*WORKLOADS, *workloads)))
    keys |= {config.own(name) for name in own}
    return frozenset(keys)


def is_computed_key(key: str, config: LabelConfig, workloads: Iterable[str] = WORKLOADS) -> bool:
    """A key nodeagent may compute: one of :func:`computed_keys`, a per-product GPU count, a per-type vGPU count."""
    prefix, _, name = key.rpartition("/")
    return (key in computed_keys(config, workloads) or (prefix == config.prefix and is_gpu_label_name(name))
            or is_vgpu_type_label(key, config.own))


def _add_profile_labels(labels: dict[str, str], extra: Mapping[str, str], config: LabelConfig,
                        warnings: list[str], readiness: Mapping[str, Readiness]) -> None:
    for key, raw in extra.items():
        value = str(raw)
        if error := label_key_error(key):
            raise LabelError(f"spec.labels: {error}")
        if error := label_value_error(value):
            raise LabelError(f"spec.labels[{key!r}]: {error}")
        if key in labels:
            if labels[key] != value:
                warnings.append(f"spec.labels[{key!r}]={value!r} ignored: nodeagent computes {key} "
                                f"({labels[key]!r} on this node)")
            continue
        if is_computed_key(key, config, readiness):
            warnings.append(f"spec.labels[{key!r}] ignored: nodeagent computes {key} itself "
                            "(and leaves it off this node)")
            continue
        labels[key] = value


def profile_taints(taints: Iterable[_TaintLike]) -> list[NodeTaint]:
    """The profile's taints, validated as the API server would; later entries win per (key, effect)."""
    result: dict[tuple[str, str], NodeTaint] = {}
    for index, taint in enumerate(taints):
        where = f"spec.taints[{index}]"
        value = "" if taint.value is None else str(taint.value)
        if error := label_key_error(taint.key):
            raise LabelError(f"{where}.key: {error}")
        if error := label_value_error(value):
            raise LabelError(f"{where}.value: {error}")
        if taint.effect not in TAINT_EFFECTS:
            raise LabelError(f"{where}.effect: {taint.effect!r} is not {TAINT_EFFECT_FORM}")
        result[(taint.key, taint.effect)] = NodeTaint(taint.key, value, taint.effect)
    return sorted(result.values())
