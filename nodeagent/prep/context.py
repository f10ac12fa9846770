"""What every subsystem planner reads: the profile, the node, prep's own facts, the options."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.inventory import Inventory
from nodeagent.prep.facts import PrepFacts
from nodeagent.prep.model import PrepOptions
from nodeagent.profile import NodeProfile


@dataclass(frozen=True)
class PlanContext:
    profile: NodeProfile
    inventory: Inventory
    facts: PrepFacts
    options: PrepOptions = field(default_factory=PrepOptions)
    annotations: dict[str, str] | None = None  # the Node's annotations; None: no cluster config
    annotations_error: str | None = None  # a cluster config exists but the Node could not be read
