"""Where and how prep writes the kubelet's settings, and the kubelet's own formats it writes in.

Discovery (:mod:`nodeagent.discover.kubelet`) says which flavour of kubelet runs here and what its
merged configuration holds; this module decides *where* nodeagent's settings go:

* ``dropin``: the kubelet reads a drop-in directory (``--config-dir``, kubelet ≥ 1.28): nodeagent
  owns ``90-nodeagent.conf`` there, a KubeletConfiguration with only its own keys. The flag is
  looked for where each flavour passes it (kubeadm-flags.env, /etc/default|sysconfig/kubelet,
  kubelet.service and its drop-ins, the running kubelet's command line); k3s and RKE2 pass their
  ``agent/etc/kubelet.conf.d`` themselves wherever they create it.
* ``edit``: no drop-in directory: a minimal, journaled edit of the kubelet's config file
  (kubeadm's /var/lib/kubelet/config.yaml): only nodeagent's top-level keys are replaced or added,
  every other line (comments included) stays as it was.
* ``rancher-args``: an older k3s/RKE2 without kubelet.conf.d: ``kubelet-arg+`` entries (appended to
  the others; the kubelet takes the last value of a flag) in a config.yaml.d file of nodeagent's own.
* OpenShift (the Machine Config Operator renders the kubelet's file) and MicroK8s are left alone,
  with the reason.

Nothing here writes: :func:`gather_kubelet` reads, the render functions return text.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from nodeagent.discover.kubelet import KUBELET_COMMS, effective_config
from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.owned import KUBELET_STATE_PENDING_PATH

DROPIN_NAME = "90-nodeagent.conf"
RANCHER_ARGS_NAME = "90-nodeagent.yaml"
KUBELET_ROOT = "/var/lib/kubelet"
CPU_STATE = f"{KUBELET_ROOT}/cpu_manager_state"
MEMORY_STATE = f"{KUBELET_ROOT}/memory_manager_state"
API_VERSION = "kubelet.config.k8s.io/v1beta1"

#: Where a kubelet's command line is assembled, per flavour (the ``--config-dir`` flag is looked for here).
FLAG_FILES = ("/var/lib/kubelet/kubeadm-flags.env", "/etc/default/kubelet", "/etc/sysconfig/kubelet",
              "/etc/systemd/system/kubelet.service", "/usr/lib/systemd/system/kubelet.service",
              "/lib/systemd/system/kubelet.service")
UNIT_DROPIN_DIRS = ("/etc/systemd/system/kubelet.service.d", "/usr/lib/systemd/system/kubelet.service.d",
                    "/lib/systemd/system/kubelet.service.d", "/run/systemd/system/kubelet.service.d")
_CONFIG_DIR = re.compile(r"""(?:^|[\s"'])(?:--)?config-dir(?:=|\s+)["']?([^\s"'$]+)""")

#: KubeletConfiguration field → kubelet flag, for the settings nodeagent writes.
FLAGS = {"cpuManagerPolicy": "cpu-manager-policy", "cpuManagerPolicyOptions": "cpu-manager-policy-options",
         "reservedSystemCPUs": "reserved-cpus", "topologyManagerPolicy": "topology-manager-policy",
         "topologyManagerScope": "topology-manager-scope", "memoryManagerPolicy": "memory-manager-policy",
         "reservedMemory": "reserved-memory"}


@dataclass
class KubeletFacts:
    """What prep knows about the kubelet's configuration and where its own settings would go."""

    config_present: bool = False
    flavour: str | None = None
    running: bool | None = None
    effective: dict[str, Any] = field(default_factory=dict)  # the merged configuration as the kubelet reads it
    mechanism: str | None = None  # dropin | edit | rancher-args; None: nodeagent does not write here (``why``)
    path: str | None = None  # the file nodeagent writes
    text: str | None = None  # its current text (None: absent)
    mode: int = 0o644  # its mode, kept by the write and by revert
    why: str = ""
    state_files: dict[str, tuple[str, int]] = field(default_factory=dict)  # present state file → (text, mode)
    flagged: dict[str, str] = field(default_factory=dict)  # key set by a kubelet flag → where (flags win)
    pending: list[str] | None = None  # state files an earlier apply left for "before kubelet starts"
    pending_text: str | None = None
    memory_total_bytes: int | None = None


def gather_kubelet(host: Host, inventory: Inventory) -> KubeletFacts:
    info = inventory.kubelet
    facts = KubeletFacts(config_present=info.config_present, flavour=info.flavour, running=info.running,
                         memory_total_bytes=inventory.memory.total_bytes or None)
    for path in (CPU_STATE, MEMORY_STATE):
        text = host.read_text(path)
        if text is not None:
            facts.state_files[path] = (text, _mode(host, path, 0o644))
    facts.pending_text = host.read_text(KUBELET_STATE_PENDING_PATH)
    facts.pending = pending_files(facts.pending_text)
    if not info.config_present:
        facts.why = ("no kubelet configuration on this host (not joined to a cluster yet?): apply again once it "
                     "has joined; the boot unit does at every boot")
        return facts
    if not info.config_readable:
        facts.why = f"{info.config_path}: the kubelet's configuration cannot be read"
        return facts
    facts.effective = effective_config(host)
    _choose(host, facts, info.config_path)
    facts.flagged = flagged_keys(host, facts.flavour)
    if facts.path is not None:
        facts.text = host.read_text(facts.path)
        facts.mode = _mode(host, facts.path, 0o600 if facts.mechanism == "rancher-args" else 0o644)
    return facts


def _choose(host: Host, facts: KubeletFacts, config_path: str | None) -> None:
    flavour = facts.flavour
    if flavour == "openshift":
        facts.why = ("OpenShift's Machine Config Operator renders the kubelet's configuration and replaces edits: "
                     "set these through a PerformanceProfile or KubeletConfig")
        return
    if flavour == "microk8s":
        facts.why = ("MicroK8s passes the kubelet flags from /var/snap/microk8s/current/args/kubelet: set them "
                     "there (nodeagent does not write MicroK8s' files)")
        return
    found = config_dir_flag(host, flavour)
    if found is not None:
        directory, where = found
        facts.mechanism, facts.path = "dropin", f"{directory}/{DROPIN_NAME}"
        facts.why = (f"drop-in: the kubelet runs with --config-dir={directory} ({where}); kubelet >= 1.28 reads "
                     "it after its config file")
        return
    if flavour in ("k3s", "rke2"):
        directory = f"/var/lib/rancher/{flavour}/agent/etc/kubelet.conf.d"
        if host.is_dir(directory):
            facts.mechanism, facts.path = "dropin", f"{directory}/{DROPIN_NAME}"
            facts.why = (f"drop-in: {flavour} passes --config-dir={directory} to its kubelet (the directory "
                         f"exists: {flavour} creates it where its kubelet reads it)")
        else:
            facts.mechanism, facts.path = "rancher-args", f"/etc/rancher/{flavour}/config.yaml.d/{RANCHER_ARGS_NAME}"
            facts.why = (f"kubelet-arg+ entries in {flavour}'s config.yaml.d ({flavour} without kubelet.conf.d: "
                         "no drop-in directory for its kubelet)")
        return
    if config_path is not None and config_path.endswith((".yaml", ".yml", ".json", ".conf")):
        facts.mechanism, facts.path = "edit", config_path
        facts.why = ("minimal edit of the kubelet's config file, journaled: no --config-dir found (kubelet < 1.28 "
                     "or not configured), only nodeagent's keys change")
        return
    facts.why = f"{config_path}: not a kubelet config file nodeagent can edit"


def config_dir_flag(host: Host, flavour: str | None) -> tuple[str, str] | None:
    """The kubelet's ``--config-dir`` and where it was found, or None."""
    sources: list[str] = list(FLAG_FILES)
    for directory in UNIT_DROPIN_DIRS:
        sources += [f"{directory}/{name}" for name in sorted(host.listdir(directory)) if name.endswith(".conf")]
    if flavour in ("k3s", "rke2"):
        etc = f"/etc/rancher/{flavour}"
        sources += [f"{etc}/config.yaml"] + [f"{etc}/config.yaml.d/{n}" for n in sorted(host.listdir(
            f"{etc}/config.yaml.d")) if n.endswith((".yaml", ".yml")) and n != RANCHER_ARGS_NAME]
    for path in sources:
        text = host.read_text(path)
        for line in (text or "").splitlines():
            if line.lstrip().startswith("#"):
                continue
            match = _CONFIG_DIR.search(line)
            if match:
                return match.group(1).rstrip("/"), f"in {path}"
    for pid in host.listdir("/proc"):
        if pid.isdigit() and (host.read_str(f"/proc/{pid}/comm") or "") in KUBELET_COMMS:
            raw = host.read_bytes(f"/proc/{pid}/cmdline", limit=65536) or b""
            words = raw.decode("utf-8", errors="replace").split("\0")
            match = _CONFIG_DIR.search(" ".join(shlex.quote(w) for w in words if w))
            if match:
                return match.group(1).rstrip("/"), f"on the running kubelet's command line (pid {pid})"
    return None


def flagged_keys(host: Host, flavour: str | None) -> dict[str, str]:
    """The settings a kubelet flag sets, and where: a flag overrides the config file and every drop-in,
    so writing those keys there would change nothing."""
    patterns = {key: re.compile(rf"""(?:^|[\s"'])(?:--)?{flag}(?:=|\s)""") for key, flag in FLAGS.items()}
    sources = [p for p in FLAG_FILES if not p.endswith(".service")]
    if flavour in ("k3s", "rke2"):
        etc = f"/etc/rancher/{flavour}"
        sources += [f"{etc}/config.yaml"] + [f"{etc}/config.yaml.d/{n}" for n in sorted(host.listdir(
            f"{etc}/config.yaml.d")) if n.endswith((".yaml", ".yml")) and n != RANCHER_ARGS_NAME]
    found: dict[str, str] = {}
    for path in sources:
        for line in (host.read_text(path) or "").splitlines():
            if line.lstrip().startswith("#"):
                continue
            for key, pattern in patterns.items():
                if key not in found and pattern.search(line):
                    found[key] = path
    return found


def _mode(host: Host, path: str, default: int) -> int:
    try:
        return os.stat(host.fs_path(path)).st_mode & 0o7777
    except OSError:
        return default


# --- the pending state-file step -----------------------------------------------------------------


def pending_files(text: str | None) -> list[str] | None:
    """The state files a pending record lists (None: no record). A record that cannot be read lists both."""
    if text is None:
        return None
    try:
        data = json.loads(text)
        files = [f for f in data.get("files", []) if f in (CPU_STATE, MEMORY_STATE)]
    except (json.JSONDecodeError, AttributeError, TypeError):
        files = [CPU_STATE, MEMORY_STATE]
    return files


def pending_content(profile_name: str, files: list[str]) -> str:
    return json.dumps({"profile": profile_name, "files": files,
                       "why": "the kubelet's CPU/memory manager settings changed while it ran; these state files "
                              "are removed before kubelet next starts (nodeagent-prep.service, or "
                              "`nodeagent apply` while kubelet is stopped)"}, indent=2) + "\n"


# --- quantities (the kubelet's resource.Quantity) -----------------------------------------------------------

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m|[eE][0-9]+)?$")
_FACTORS = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
            "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def quantity_bytes(value: Any) -> int | None:
    """A Kubernetes quantity (``500Mi``, ``1G``, ``1e9``, ``100``) in bytes; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    match = _QUANTITY.match(str(value).strip())
    if not match:
        return None
    number, suffix = match.groups()
    if suffix == "m":
        return int(float(number) / 1000)
    if suffix and suffix[0] in "eE":
        return int(float(number) * 10 ** int(suffix[1:]))
    return int(float(number) * _FACTORS[suffix])


def format_quantity(size: int) -> str:
    """Bytes as the kubelet writes them: the largest binary unit that divides them (``1100Mi``)."""
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        factor = _FACTORS[suffix]
        if size and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


# --- rendering and editing ---------------------------------------------------------------------------


def render_dropin(profile_name: str, settings: dict[str, Any]) -> str:
    import yaml

    head = (f"# Written by nodeagent (profile {profile_name}): the kubelet's CPU, topology and memory managers.\n"
            "# `nodeagent revert` removes it; the kubelet reads it only when it starts.\n")
    body = {"apiVersion": API_VERSION, "kind": "KubeletConfiguration", **settings}
    return head + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)


def render_rancher_args(profile_name: str, settings: dict[str, Any]) -> str:
    import yaml

    head = (f"# Written by nodeagent (profile {profile_name}): the kubelet's CPU, topology and memory managers,\n"
            "# appended to the other kubelet-arg entries (the kubelet takes a flag's last value).\n"
            "# `nodeagent revert` removes it.\n")
    return head + yaml.safe_dump({"kubelet-arg+": as_flags(settings)}, sort_keys=False, default_flow_style=False)


def as_flags(settings: dict[str, Any]) -> list[str]:
    flags: list[str] = []
    for key, value in settings.items():
        name = FLAGS[key]
        if key == "cpuManagerPolicyOptions":
            flags.append(f"{name}=" + ",".join(f"{k}={v}" for k, v in value.items()))
        elif key == "reservedMemory":
            flags += [f"{name}={e['numaNode']}:" + ",".join(f"{k}={v}" for k, v in e["limits"].items())
                      for e in value]
        else:
            flags.append(f"{name}={value}")
    return flags


def edit_config(text: str | None, settings: dict[str, Any]) -> tuple[str, bool]:
    """The config file's text with ``settings`` set: (new text, whether every other line was kept).

    A YAML file is edited line by line: a top-level key nodeagent sets has its block replaced (or is
    appended), and nothing else moves. The result must load to exactly the old configuration plus
    the settings; where it would not (a JSON file, flow style, several documents), the file is
    rewritten from its loaded content, which keeps every key but not the comments.
    """
    import yaml

    old = yaml.safe_load(text or "") or {}
    want = {**old, **settings}
    edited = _edit_lines(text or "", settings)
    if edited is not None:
        try:
            if yaml.safe_load(edited) == want:
                return edited, True
        except yaml.YAMLError:
            pass
    if (text or "").lstrip().startswith("{"):
        return json.dumps(want, indent=2) + "\n", False
    return yaml.safe_dump(want, sort_keys=False, default_flow_style=False), False


_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*|\"[^\"]+\"|'[^']+')\s*:(?:\s|$)")


def _edit_lines(text: str, settings: dict[str, Any]) -> str | None:
    import yaml

    lines = text.splitlines(keepends=True)
    if any(line.rstrip() in ("---", "...") for line in lines[1:]) or text.lstrip().startswith(("{", "[")):
        return None
    blocks: dict[str, tuple[int, int]] = {}
    for index, line in enumerate(lines):
        match = _TOP_KEY.match(line)
        if not match:
            continue
        key = match.group(1).strip("\"'")
        if key in blocks:
            return None
        end = index + 1
        last = index + 1
        while end < len(lines):
            following = lines[end]
            if following.startswith((" ", "\t", "- ")) and following.strip() and \
                    not following.lstrip().startswith("#"):
                last = end + 1
            elif following.strip() and not following.lstrip().startswith("#") and \
                    not following.startswith((" ", "\t")):
                break
            end += 1
        blocks[key] = (index, last)
    replaced: dict[int, tuple[int, str]] = {}
    appended: list[str] = []
    for key, value in settings.items():
        rendered = yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=False)
        if key in blocks:
            start, stop = blocks[key]
            replaced[start] = (stop, rendered)
        else:
            appended.append(rendered)
    out: list[str] = []
    index = 0
    while index < len(lines):
        if index in replaced:
            stop, rendered = replaced[index]
            out.append(rendered)
            index = stop
            continue
        out.append(lines[index])
        index += 1
    if appended and out and not out[-1].endswith("\n"):
        out.append("\n")
    return "".join(out + appended)
