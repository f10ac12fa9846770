"""The installed profile: ``/etc/nodeagent/profile.yaml``, which the boot unit re-applies before kubelet.

That is how the runtime settings (2Mi pages, KSM, governor, vfio bindings) survive a reboot. The
boot unit itself (``--boot``) plans with the installed profile and so never installs it again.
"""

from __future__ import annotations

import os

from nodeagent.owned import PROFILE_PATH
from nodeagent.prep.context import PlanContext
from nodeagent.prep.handlers import FILE
from nodeagent.prep.lifecycle import SubsystemSpec
from nodeagent.prep.model import Action, Change, Effect, Plan, Subsystem


def plan_profile_install(ctx: PlanContext, plan: Plan) -> None:
    text = ctx.profile.source_text
    if ctx.options.boot or text is None or text == ctx.facts.installed_profile:
        return
    if ctx.options.profile_path and _same_file(ctx.options.profile_path, ctx.inventory.root):
        return
    plan.changes.append(Change(
        Subsystem.PERSIST, PROFILE_PATH, "absent" if ctx.facts.installed_profile is None else "another profile",
        f"profile {ctx.profile.name}", Effect.NOW, True, Action.FILE, PROFILE_PATH,
        note="nodeagent-prep.service re-applies it at boot, before kubelet", detail={"content": text},
    ))


def _same_file(path: str, root: str) -> bool:
    """The profile given is the installed one itself (``apply -f /etc/nodeagent/profile.yaml``)."""
    try:
        return os.path.samefile(path, os.path.join(root, PROFILE_PATH.lstrip("/")))
    except OSError:
        return False


SPEC = SubsystemSpec(Subsystem.PERSIST, plan=plan_profile_install, handlers={Action.FILE: FILE})
