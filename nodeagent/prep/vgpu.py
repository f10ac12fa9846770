"""``spec.gpu.vgpu``: vGPU instances created where KubeVirt does not — planned, journaled, revertible.

Creating instances is KubeVirt's by default (``mediatedDevicesConfiguration`` in the KubeVirt CR);
this opt-in is for the nodes and types KubeVirt does not manage (docs/vgpu.md). For each
``create`` entry and each physical GPU it selects, apply makes the instances that are missing up to
``count`` (those that exist count, whoever created them):

* mediated devices: a UUID written to the parent's ``mdev_supported_types/<type>/create``
  (Documentation/ABI/testing/sysfs-bus-vfio-mdev), then read back: ``/sys/bus/mdev/devices/<uuid>``
  must exist with that type. On a GPU whose SR-IOV VFs are the parents (Ampere/Ada) each instance
  takes a free VF. Restore writes ``1`` to the instance's ``remove``. UUIDs are derived from the
  host name, parent, type and ordinal (uuid5), so a plan is reproducible and the boot-time apply
  recreates the same devices after a reboot (mediated devices do not survive one);
* SR-IOV vGPU (vGPU 17+): the type id written to a free VF's ``nvidia/current_vgpu_type``, read
  back; restore writes the journaled old value (``0``: no vGPU).

Apply never removes an instance (a ``count`` below what exists is a note); ``revert`` removes exactly
the instances the journal says nodeagent created and puts back each VF's previous type.

Refused (nothing written): a GPU passed through whole (bound to vfio-pci, or selected by
``spec.gpu.passthrough``: a GPU is one or the other); a GPU that offers no vGPU types or cannot take
the type now (another time-sliced type is on it); fewer instances creatable than needed
(``available_instances``, free VFs listing the type); and, unless ``--force``, more instances on one
GPU than ``spec.gpu.vgpu.maxPerGpu``, the ratio cap.
"""

from __future__ import annotations

import uuid as uuidlib
from collections import Counter
from typing import Any

from nodeagent.discover.pci import PCI_DEVICES, is_vfio_driver
from nodeagent.discover.vgpu import CURRENT, MDEV_BUS, MDEV_DEVICES, VGPU_DIR
from nodeagent.gpuselect import describe_selector, selected_gpus, unmatched_selectors
from nodeagent.host import Host
from nodeagent.inventory import Gpu, Inventory
from nodeagent.prep.context import PlanContext
from nodeagent.prep.handlers import ATTR, Handler, RunState, VerifyError
from nodeagent.prep.lifecycle import SubsystemSpec
from nodeagent.prep.model import Action, Change, Effect, Plan, Refusal, Skip, Subsystem
from nodeagent.vgpupool import MDEV, TypePool, instances_per_gpu, inventory_pools, vgpu_gpus
from nodeagent.vgpuspec import VgpuCreate, VgpuSpec

KUBEVIRT_NOTE = ("spec.gpu.vgpu creates vGPU instances itself: KubeVirt's mediatedDevicesConfiguration must not "
                 "select these GPUs' types on this node (KubeVirt would create or remove instances of its own; "
                 "docs/vgpu.md)")
_UUID_NAMESPACE = uuidlib.UUID("6f0b3a3e-6c1a-5b7e-9d2f-0a6e7d1c4b58")  # nodeagent's mediated devices


def plan_vgpu(ctx: PlanContext, plan: Plan) -> None:
    spec = ctx.profile.gpu_vgpu
    if spec is None or not spec.create:
        return
    planner = _Planner(ctx, plan, spec)
    for entry in spec.create:
        planner.entry(entry)
    if planner.changed:
        plan.notes.append(KUBEVIRT_NOTE)


class _Planner:
    def __init__(self, ctx: PlanContext, plan: Plan, spec: VgpuSpec) -> None:
        self.ctx, self.plan, self.spec = ctx, plan, spec
        self.inv: Inventory = ctx.inventory
        self.pools = inventory_pools(self.inv)
        self.instances = Counter(instances_per_gpu(self.pools))  # per GPU, planned ones added as they come
        self.passed_through = {g.address for g in selected_gpus(ctx.profile, self.inv)}
        self.capable = set(vgpu_gpus(self.inv.vgpu))
        self.existing = {m.uuid for m in self.inv.vgpu.mdevs}
        self.claimed: dict[tuple[str, str], VgpuCreate] = {}  # (GPU, type) → the entry that plans it
        self.changed = False

    def refuse(self, target: str, reason: str, *, forceable: bool = False) -> bool:
        """Record a refusal; True when ``--force`` overrides it (the GPU may go on)."""
        refusal = Refusal(Subsystem.VGPU, target, reason, forceable=forceable)
        if forceable and self.ctx.options.force:
            self.plan.forced.append(refusal)
            return True
        self.plan.refusals.append(refusal)
        return False

    def entry(self, entry: VgpuCreate) -> None:
        matching = {p.gpu: p for p in self.pools if p.matches(entry.type)}
        if entry.gpus:
            for selector in unmatched_selectors(entry.gpus, self.inv):
                self.plan.skipped.append(Skip(Subsystem.VGPU, f"{entry.type} on {describe_selector(selector)}",
                                              "no GPU on this node matches"))
            gpus = selected_gpus(entry.gpus, self.inv)
        else:
            gpus = [g for g in self.inv.gpus if g.address in matching]
            if not gpus:
                self.plan.skipped.append(Skip(Subsystem.VGPU, entry.type,
                                              "no GPU on this node offers this vGPU type now"))
                return
        for gpu in gpus:
            self.gpu(entry, gpu, matching.get(gpu.address))

    def gpu(self, entry: VgpuCreate, gpu: Gpu, pool: TypePool | None) -> None:
        target = f"{gpu.address} {entry.type}"
        claim = (gpu.address, pool.type_id if pool else entry.type.replace(" ", "_"))
        first = self.claimed.setdefault(claim, entry)
        if first is not entry:
            self.refuse(target, f"{first.path} and {entry.path} both select this GPU for this type: give its "
                                "count once")
            return
        if gpu.address in self.passed_through or is_vfio_driver(gpu.driver):
            why = "selected by spec.gpu.passthrough" if gpu.address in self.passed_through else \
                f"bound to {gpu.driver}"
            self.refuse(target, f"the GPU is passed through whole ({why}): a GPU is either passed through or "
                                "shared as vGPU, never both")
            return
        if gpu.address not in self.capable:
            self.refuse(target, f"the GPU offers no vGPU types (driver {gpu.driver or 'none'}; the vendor's vGPU "
                                "host driver registers them: mdev types, or SR-IOV VFs with nvidia/ files)")
            return
        if pool is None:
            self.refuse(target, f"{entry.type} cannot be created on this GPU now: {self.why_not(gpu.address)}")
            return
        need = entry.count - pool.used
        if need <= 0:
            if pool.used > entry.count:
                self.plan.notes.append(f"{target}: {pool.used} instances exist, more than count {entry.count}; "
                                       "apply never removes vGPU instances (revert removes those it created)")
            return
        total = self.instances[gpu.address] + need
        if total > self.spec.max_per_gpu and not self.refuse(
                target, f"the GPU would hold {total} vGPU instances ({self.instances[gpu.address]} exist, {need} "
                        f"more of {pool.name or pool.type_id}), more than spec.gpu.vgpu.maxPerGpu "
                        f"{self.spec.max_per_gpu} (the ratio cap; --force overrides)", forceable=True):
            return
        if need > pool.available:
            source = ("available_instances" if pool.mode == MDEV else
                      "free VFs listing it in creatable_vgpu_types, within the GPU's memory")
            self.refuse(target, f"needs {need} more {pool.name or pool.type_id} instance{'s' if need != 1 else ''}, "
                                f"the kernel can create {pool.available} ({source})")
            return
        changes = self.mdev_changes(pool, need) if pool.mode == MDEV else self.sriov_changes(pool, need)
        if len(changes) < need:
            self.refuse(target, f"needs {need} more instances, only {len(changes)} free parents offer "
                                f"{pool.name or pool.type_id}")
            return
        self.plan.changes.extend(changes)
        self.instances[gpu.address] += need
        self.changed = True

    def why_not(self, gpu: str) -> str:
        held = [f"{p.used} {p.name or p.type_id}" for p in self.pools if p.gpu == gpu and p.used]
        if held:
            return f"it holds {', '.join(held)} (time-sliced vGPU types do not mix on one GPU)"
        return f"the GPU does not offer it (offers: {', '.join(self.offered(gpu)) or 'nothing now'})"

    def offered(self, gpu: str) -> list[str]:
        names = {t.name or t.type_id for p in self.inv.vgpu.mdev_parents if p.gpu == gpu for t in p.types}
        names |= {t.name for vf in self.inv.vgpu.sriov_vfs if vf.gpu == gpu for t in vf.creatable}
        return sorted(names)

    def mdev_changes(self, pool: TypePool, need: int) -> list[Change]:
        changes: list[Change] = []
        for parent in sorted((p for p in self.inv.vgpu.mdev_parents if p.gpu == pool.gpu), key=lambda p: p.address):
            mtype = next((t for t in parent.types if t.type_id == pool.type_id), None)
            if mtype is None or not mtype.available_instances:
                continue
            busy = any(t.instances for t in parent.types)
            slots = (0 if busy else 1) if parent.vf else mtype.available_instances
            for _ in range(min(slots, need - len(changes))):
                uuid = self.new_uuid(parent.address, pool.type_id)
                changes.append(Change(
                    Subsystem.VGPU, f"mdev {uuid}", "absent", f"{pool.type_id} on {parent.address}", Effect.NOW, True,
                    Action.MDEV, note=f"{pool.name or pool.type_id} on {parent.address} (GPU {pool.gpu})",
                    detail={"uuid": uuid, "parent": parent.address, "type": pool.type_id, "gpu": pool.gpu}))
            if len(changes) == need:
                break
        return changes

    def new_uuid(self, parent: str, type_id: str) -> str:
        """The next free UUID of this host, parent and type (uuid5: the same plan every time)."""
        for n in range(1 << 16):
            candidate = str(uuidlib.uuid5(_UUID_NAMESPACE, f"{self.inv.hostname}/{parent}/{type_id}/{n}"))
            if candidate not in self.existing:
                self.existing.add(candidate)
                return candidate
        raise RuntimeError(f"no free mediated-device UUID for {parent} {type_id}")  # 65536 instances: impossible

    def sriov_changes(self, pool: TypePool, need: int) -> list[Change]:
        type_id = int(pool.type_id)
        free = [vf for vf in self.inv.vgpu.sriov_vfs if vf.gpu == pool.gpu and vf.current_type == 0
                and any(t.id == type_id for t in vf.creatable)]
        return [Change(Subsystem.VGPU, vf.address, "0", str(type_id), Effect.NOW, True, Action.ATTR,
                       f"{PCI_DEVICES}/{vf.address}/{VGPU_DIR}/{CURRENT}",
                       note=f"{pool.name or pool.type_id} on VF {vf.index} of {pool.gpu}",
                       detail={"gpu": pool.gpu, "type": pool.type_id})
                for vf in sorted(free, key=lambda v: v.index)[:need]]


# --- the mediated-device handler ------------------------------------------------------------


def create_path(parent: str, type_id: str) -> str:
    return f"{MDEV_BUS}/{parent}/mdev_supported_types/{type_id}/create"


def _mdev_before(host: Host, change: Change) -> Any:
    uuid = change.detail["uuid"]
    if host.exists(f"{MDEV_DEVICES}/{uuid}"):
        raise RuntimeError(f"mediated device {uuid} already exists: nodeagent creates only devices that do not")
    return None


def _mdev_apply(host: Host, change: Change, state: RunState) -> None:
    uuid, parent, type_id = change.detail["uuid"], change.detail["parent"], change.detail["type"]
    host.write(create_path(parent, type_id), uuid)
    if host.dry_run:
        return
    host.forget_paths()
    made = host.link_name(f"{MDEV_DEVICES}/{uuid}/mdev_type")
    if made != type_id:
        raise VerifyError(f"wrote {uuid} to {create_path(parent, type_id)}, but /sys/bus/mdev/devices/{uuid} "
                          + ("does not exist" if made is None else f"has type {made}"))


def _mdev_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    """Remove the instance (only a UUID the journal validated; nothing when it is already gone)."""
    device = f"{MDEV_DEVICES}/{detail['uuid']}"
    if not host.exists(device):
        return
    host.write(f"{device}/remove", "1")
    if host.dry_run:
        return
    host.forget_paths()
    if host.exists(device):
        raise VerifyError(f"{device}: still there after remove (a VM may be using it)")


MDEV_HANDLER = Handler(_mdev_before, _mdev_apply, _mdev_restore)

SPEC = SubsystemSpec(Subsystem.VGPU, plan=plan_vgpu, handlers={Action.MDEV: MDEV_HANDLER, Action.ATTR: ATTR})
