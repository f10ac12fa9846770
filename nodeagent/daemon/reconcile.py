"""One reconcile step: inventory → profile selection → prep → publication.

1. **Inventory**: ``discover`` through the Host (a few ms; 25 ms on a 224-CPU node). The result
   replaces the one ``/metrics`` reads, so a scrape never touches sysfs itself.
2. **Selection**: the Node's labels (as the publisher's watch last saw them) against each
   profile's ``nodeSelector``; without a cluster, the ``--node-label`` set. While publishing and
   the Node has not been seen yet, the step stops here and is retried: publishing without knowing
   the profile would strip the profile's taints from a node on every restart.
3. **Prep** (not with ``--read-only``): :class:`~nodeagent.daemon.prep_runner.PrepRunner`, i.e. the
   ``apply`` code path; after a change, the inventory is taken again.
4. **Publication**: the desired labels, taints and NodeResourceTopology go to the
   PublisherLoop, whose own threads write them (so a slow API server never blocks a reconcile).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from nodeagent.daemon.options import ServeOptions
from nodeagent.daemon.prep_runner import PrepOutcome, PrepRunner
from nodeagent.daemon.profiles import LoadedProfile, ProfileStore, Selection, labels_match
from nodeagent.daemon.status import DaemonStatus, PrepStatus
from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.labels import LabelConfig, LabelError, parse_owned
from nodeagent.workloads import WorkloadClassesError, WorkloadTable, default_table, table_for

if TYPE_CHECKING:
    from nodeagent.k8s.loop import PublisherLoop
    from nodeagent.k8s.nodediff import NodeView

log = logging.getLogger(__name__)

NODE_WAIT_S = 5.0  # how long a step waits for the publisher's first look at the Node

SelectionKey = tuple[tuple[str, str], ...]


class Reconciler:
    def __init__(self, host: Host, options: ServeOptions, *, store: ProfileStore, status: DaemonStatus,
                 stop: threading.Event, label_config: LabelConfig, publisher: PublisherLoop | None = None,
                 prep: PrepRunner | None = None, notify: Callable[[str, str], None] | None = None,
                 workloads_base: WorkloadTable | None = None) -> None:
        self.host = host
        self.options = options
        self.store = store
        self.status = status
        self.stop = stop
        self.label_config = label_config
        self.publisher = publisher
        self.prep = prep
        self.notify = notify or (lambda reason, message: None)
        self.inventory: Inventory | None = None
        self.last_selection_key: SelectionKey | None = None
        self._reported_conflict: tuple[str, ...] = ()
        self._reported_errors: dict[str, str | None] = {}  # Event reason -> the last message reported
        # the --workload-classes file's table; the classes in force add the selected profile's
        self.workloads_base = workloads_base or default_table()
        self.workloads = self.workloads_base

    # --- inventory ---------------------------------------------------------------------------

    def discover(self) -> Inventory:
        inventory = discover(self.host, netlink=self.options.netlink)
        self.inventory = inventory
        return inventory

    def current_inventory(self) -> Inventory:
        """For the metrics collectors: the last inventory (taken once before serving starts)."""
        inventory = self.inventory
        if inventory is None:
            raise RuntimeError("no inventory yet")
        return inventory

    def current_workloads(self) -> WorkloadTable:
        """For the metrics collectors: the workload classes in force (the file's, then the profile's)."""
        return self.workloads

    def _select_workloads(self, loaded: LoadedProfile | None) -> WorkloadTable:
        """The file's classes with the profile's over them; the file's alone when the profile's cannot be."""
        try:
            table = table_for(self.workloads_base, loaded.profile if loaded is not None else None)
        except WorkloadClassesError as exc:
            self._report_once("WorkloadClassesInvalid", f"{exc}; the profile's workload classes are not used")
            return self.workloads_base
        self._report_once("WorkloadClassesInvalid", None)
        return table

    def _report_once(self, reason: str, message: str | None) -> None:
        """Log ``message`` and send it as an Event once, until it changes; None: the problem has cleared."""
        if message is not None and message != self._reported_errors.get(reason):
            log.error("%s", message)
            self.notify(reason, message)
        self._reported_errors[reason] = message

    # --- the Node ----------------------------------------------------------------------------

    def node(self) -> NodeView | None:
        return self.publisher.observed if self.publisher is not None else None

    def wait_for_node(self, timeout_s: float = NODE_WAIT_S) -> NodeView | None:
        deadline = time.monotonic() + timeout_s
        while True:
            node = self.node()
            if node is not None or self.stop.is_set() or time.monotonic() >= deadline:
                return node
            self.stop.wait(0.05)

    def selection_key(self) -> SelectionKey | None:
        """The Node labels profiles may select on (not nodeagent's own); None before the Node is seen."""
        if self.publisher is None:
            return tuple(sorted(self.options.node_labels.items()))
        node = self.node()
        if node is None:
            return None
        owned = parse_owned(node.annotations.get(self.label_config.owned_labels_annotation))
        return tuple(sorted((k, v) for k, v in node.labels.items() if k not in owned))

    def _matcher(self, node: NodeView | None) -> Callable[[Mapping[str, str]], bool]:
        if self.publisher is None or node is None:
            return labels_match(self.options.node_labels)
        from nodeagent.k8s.nodediff import unmatched_selector

        return lambda selector: not unmatched_selector(node, selector, self.label_config)

    # --- the step ----------------------------------------------------------------------------

    def step(self, trigger: str) -> bool:
        """One pass. Returns False when it had to stop early (the Node not seen yet).

        The plan reads the host files discovery read from discovery's reading (Host.snapshot): a
        converged node's step reads each file once. A discovery under the apply lock, or after a
        write, reads afresh.
        """
        with self.host.snapshot():
            return self._step(trigger)

    def _step(self, trigger: str) -> bool:
        inventory = self.discover()
        node = None
        if self.publisher is not None:
            node = self.wait_for_node(NODE_WAIT_S if self.last_selection_key is None else 0.0)
            if node is None:
                stats = self.publisher.stats
                why = f"Node {self.publisher.node_name} not seen on the API server yet"
                if stats.last_error:
                    why += f" (last error: {stats.last_error})"
                self.status.update(waiting=why)
                log.warning("%s; will retry", why, extra={"trigger": trigger})
                return False
        self.last_selection_key = self.selection_key()
        selection = self.store.select(self._matcher(node))
        self._note_selection(selection)
        loaded = selection.profile
        self.workloads = self._select_workloads(loaded)
        outcome = self._prep(loaded, inventory, node)
        if outcome.wrote and not self.stop.is_set():
            inventory = self.discover()
        self.status.update(waiting=None, prep_state=outcome.state, prep_message=outcome.message)
        if self.publisher is not None:
            self._publish(inventory, loaded)
        return True

    def _prep(self, loaded: LoadedProfile | None, inventory: Inventory, node: NodeView | None) -> PrepOutcome:
        if loaded is None:
            return PrepOutcome(PrepStatus.NONE, "no profile selects this node: observe only")
        if self.options.read_only or self.prep is None:
            return PrepOutcome(PrepStatus.READ_ONLY, f"profile {loaded.name} selected; --read-only: not applied")
        if self.stop.is_set():
            return PrepOutcome(PrepStatus.STOPPED, "shutting down")
        annotations = node.annotations if node is not None else None
        try:
            return self.prep.run(loaded, inventory, annotations=annotations)
        except Exception as exc:  # a malformed journal, a host error, a bug: a failed prep, never a stuck step
            message = f"profile {loaded.name}: prep failed: {type(exc).__name__}: {exc}"
            log.exception("%s", message, extra={"profile": loaded.name})
            return PrepOutcome(PrepStatus.FAILED, message)

    def _publish(self, inventory: Inventory, loaded: LoadedProfile | None) -> None:
        assert self.publisher is not None
        try:
            self.publisher.update(inventory, loaded.profile if loaded is not None else None, self.workloads)
        except LabelError as exc:
            self._report_once("ProfileLabelsInvalid",
                              f"profile {loaded.name if loaded else '-'}: {exc}; the previous labels stay published")
            return
        self._report_once("ProfileLabelsInvalid", None)

    def _note_selection(self, selection: Selection) -> None:
        loaded = selection.profile
        previous = self.status.snapshot().profile_file
        chosen = loaded.file if loaded is not None else None
        conflicts = tuple(p.file for p in selection.conflicts)
        self.status.update(profile=loaded.name if loaded else None, profile_file=chosen, conflicts=conflicts)
        if chosen != previous:
            log.info("%s", selection.describe(), extra={"profile": loaded.name if loaded else None})
        if conflicts != self._reported_conflict:
            self._reported_conflict = conflicts
            if conflicts:
                message = "several profiles select this node: " + selection.describe()
                log.warning("%s", message)
                self.notify("ProfileConflict", message)
