"""What the publisher makes true on the cluster for one node (pure; no client)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodeagent.inventory import Inventory
from nodeagent.k8s.topology import build_topology
from nodeagent.k8s.usage import TopologyUsage
from nodeagent.labels import LabelConfig, LabelSet, NodeTaint, ProfileLike, compute_labels

if TYPE_CHECKING:
    from nodeagent.workloads import WorkloadTable


@dataclass(frozen=True)
class DesiredState:
    """Labels, taints and the topology nodeagent publishes for its node.

    ``topology`` is the NodeResourceTopology built for a node whose uid is not known yet; the
    publisher adds the owner reference. None: do not manage the NodeResourceTopology.
    ``readiness`` (workload → reasons it is not ready, empty when ready) words the Events.
    """

    labels: Mapping[str, str]
    taints: tuple[NodeTaint, ...] = ()
    label_config: LabelConfig = field(default_factory=LabelConfig)
    topology: Mapping[str, Any] | None = None
    readiness: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def readiness_keys(self) -> dict[str, str]:
        """Label key → workload, for the ``ready-<workload>`` labels."""
        return {self.label_config.own(f"ready-{w}"): w for w in self.readiness}


def desired_state(inv: Inventory, profile: ProfileLike | None = None, *, node_name: str,
                  label_config: LabelConfig | None = None, topology: bool = True,
                  extra_gpu_resources: Mapping[str, str] | None = None,
                  label_set: LabelSet | None = None, usage: TopologyUsage | None = None,
                  workloads: WorkloadTable | None = None) -> DesiredState:
    """Compute the desired state from an Inventory (and a profile) — the daemon calls this per discovery.

    ``label_set``: labels already computed for the same inputs (the CLI prints them first).
    ``usage``: what running VMs/pods hold, for the topology's ``available`` (:func:`gather_usage`).
    ``workloads``: the workload classes in force (:func:`nodeagent.workloads.table_for`); None: the
    defaults with the profile's ``spec.workloadClasses`` over them.
    """
    from nodeagent.workloads import table_for

    label_config = label_config or LabelConfig()
    ready = (table_for(None, profile) if workloads is None else workloads).readiness(inv)
    if label_set is None:
        label_set = compute_labels(inv, profile, config=label_config, readiness=ready)
    return DesiredState(
        labels=label_set.labels,
        taints=tuple(label_set.taints),
        label_config=label_config,
        topology=build_topology(inv, node_name, extra_gpu_resources=extra_gpu_resources, usage=usage)
        if topology else None,
        readiness={w: tuple(r.reasons) for w, r in ready.items()},
    )
