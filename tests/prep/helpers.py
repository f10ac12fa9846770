"""Small helpers shared by the prep tests: profile documents, plan and apply in one call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.prep.apply import ApplyResult, execute
from nodeagent.prep.context import PlanContext
from nodeagent.prep.model import Plan, PrepOptions
from nodeagent.prep.plan import build_plan, plan_for_host
from nodeagent.profile import parse_profile_text


def profile_doc(spec: dict[str, Any], name: str = "test") -> dict[str, Any]:
    return {"apiVersion": "nodeagent.io/v1alpha1", "kind": "NodeProfile", "metadata": {"name": name}, "spec": spec}


def planned(host: Host, spec: dict[str, Any], *, annotations: dict[str, str] | None = None,
            **options: Any) -> tuple[PlanContext, Plan]:
    inventory = discover(host)
    profile = parse_profile_text(yaml.safe_dump(profile_doc(spec)), inventory)
    options.setdefault("retry_interval_s", 0.0)
    options.setdefault("allocation_timeout_s", 0.0)  # one retry after compaction, no waiting
    # As the boot unit plans (the profile is already installed), unless a test asks otherwise:
    # keeps the /etc/nodeagent/profile.yaml install out of every plan.
    options.setdefault("boot", True)
    ctx = plan_for_host(host, inventory, profile, options=PrepOptions(**options), annotations=annotations)
    return ctx, build_plan(ctx)


def applied(host: Host, spec: dict[str, Any], **options: Any) -> ApplyResult:
    ctx, plan = planned(host, spec, **options)
    return execute(plan, ctx, host, sleep=lambda _: None)


def journal(root: Path) -> dict[str, Any] | None:
    path = root / "var/lib/nodeagent/journal.json"
    return json.loads(path.read_text()) if path.exists() else None


def read(root: Path, path: str) -> str:
    return (root / path.lstrip("/")).read_text().strip()
