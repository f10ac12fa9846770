"""The kubelet: its configuration (CPU/topology/memory manager policies) and whether it runs.

Every distribution keeps the kubelet's configuration somewhere else, and several pass the policies
as command-line flags instead of a KubeletConfiguration file. Kubelet's own precedence applies:
the config file, then the drop-in directory (``--config-dir``, files in lexical order), then flags.

| flavour | config file | drop-ins | flags |
|---|---|---|---|
| kubeadm | /var/lib/kubelet/config.yaml | /etc/kubernetes/kubelet.conf.d/*.conf | /var/lib/kubelet/kubeadm-flags.env |
| OpenShift | /etc/kubernetes/kubelet.conf (a KubeletConfiguration, not kubeadm's kubeconfig) | — | — |
| k3s | — | /var/lib/rancher/k3s/agent/etc/kubelet.conf.d/ | ``kubelet-arg`` in /etc/rancher/k3s/config.yaml(.d) |
| RKE2 | — | /var/lib/rancher/rke2/agent/etc/kubelet.conf.d/ | ``kubelet-arg`` in /etc/rancher/rke2/config.yaml(.d) |
| MicroK8s | ``--config`` in the args file | — | /var/snap/microk8s/current/args/kubelet |
| EKS and others | /etc/kubernetes/kubelet/config.yaml, /etc/kubernetes/kubelet.yaml | — | — |
"""

from __future__ import annotations

from typing import Any

from nodeagent.discover.process import find_process
from nodeagent.host import Host
from nodeagent.inventory import KubeletInfo
from nodeagent.parse import parse_cpulist

# Kubelet flag → KubeletConfiguration field, for the policies nodeagent reads.
FLAG_FIELDS = {
    "cpu-manager-policy": "cpuManagerPolicy", "reserved-cpus": "reservedSystemCPUs",
    "topology-manager-policy": "topologyManagerPolicy", "topology-manager-scope": "topologyManagerScope",
    "memory-manager-policy": "memoryManagerPolicy",
}
KUBEADM_CONFIG = "/var/lib/kubelet/config.yaml"
OPENSHIFT_CONFIG = "/etc/kubernetes/kubelet.conf"
MICROK8S_ARGS = "/var/snap/microk8s/current/args/kubelet"
OTHER_CONFIGS = ("/etc/kubernetes/kubelet/config.yaml", "/etc/kubernetes/kubelet.yaml")
RANCHER = {"k3s": "k3s", "rke2": "rke2"}
KUBELET_COMMS = ("kubelet", "k3s-server", "k3s-agent", "kubelite", "hyperkube")


class _Found:
    """What the kubelet's configuration files said so far, while they are merged.

    A plain class: a dataclass would compile its methods at every start (~0.5 ms) for this.
    """

    def __init__(self, flavour: str | None = None) -> None:
        self.flavour = flavour
        self.path: str | None = None  # the main file it was read from
        self.config: dict[str, Any] = {}
        self.present = False
        self.readable = True


def discover_kubelet(host: Host) -> KubeletInfo:
    running, started_at = find_process(host, KUBELET_COMMS)  # on its own, or inside k3s/MicroK8s' kubelite
    found = _find(host)
    if not found.present:
        return KubeletInfo(config_present=False, config_path=None, cpu_manager_policy=None, reserved_system_cpus=None,
                           topology_manager_policy=None, topology_manager_scope=None, memory_manager_policy=None,
                           running=running, started_at=started_at)
    config = found.config
    return KubeletInfo(
        config_present=True,
        config_path=found.path,
        cpu_manager_policy=_policy(host, found.path or "", config, "cpuManagerPolicy"),
        reserved_system_cpus=_reserved(host, found.path or "", config.get("reservedSystemCPUs")),
        topology_manager_policy=_policy(host, found.path or "", config, "topologyManagerPolicy"),
        topology_manager_scope=_policy(host, found.path or "", config, "topologyManagerScope"),
        memory_manager_policy=_policy(host, found.path or "", config, "memoryManagerPolicy"),
        running=running,
        started_at=started_at,
        flavour=found.flavour,
        config_readable=found.readable,
    )


def _find(host: Host) -> _Found:
    """The first flavour whose files are on this host, with its merged configuration."""
    for finder in (_openshift, _rancher, _microk8s, _kubeadm, _others):
        found = finder(host)
        if found.present:
            return found
    return _Found()


def _read(host: Host, path: str, found: _Found) -> str | None:
    """A file's text; a file this user may not read marks the configuration as not readable."""
    text = host.read_text(path)
    if text is None and host.is_denied(path):
        found.present, found.readable = True, False
        found.path = found.path or path
    return text


def _yaml(host: Host, path: str, text: str) -> dict[str, Any]:
    import yaml  # only hosts with a kubelet pay for the import

    try:
        # libyaml's loader where PyYAML has it (its wheels do): the pure-Python one takes ~25 ms
        # for its first document, a tenth of a 1024-CPU host's discovery.
        config = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as exc:
        host.warn(path, f"not valid YAML ({str(exc).splitlines()[0]}); kubelet policies unknown")
        return {}
    except (ValueError, TypeError, AttributeError, ArithmeticError, LookupError, RecursionError) as exc:
        # PyYAML's constructors raise built-in errors for some malformed scalars (2001-13-45).
        host.warn(path, f"not valid YAML (a value cannot be read: {str(exc)[:80]}); kubelet policies unknown")
        return {}
    if not isinstance(config, dict):
        host.warn(path, "expected a KubeletConfiguration mapping; kubelet policies unknown")
        return {}
    return config


def _merge_file(host: Host, path: str, found: _Found, *, kind_required: bool = False) -> bool:
    text = _read(host, path, found)
    if text is None:
        return False
    config = _yaml(host, path, text)
    if kind_required and config.get("kind") != "KubeletConfiguration":
        return False
    found.present = True
    found.path = found.path or path
    found.config.update(config)
    return True


def _merge_dropins(host: Host, directory: str, found: _Found) -> None:
    for name in host.listdir(directory):
        if name.endswith(".conf"):
            _merge_file(host, f"{directory}/{name}", found)
    if host.is_denied(directory) and host.exists(directory):
        found.present, found.readable = True, False
        found.path = found.path or directory


def _merge_flags(host: Host, path: str, args: list[str], found: _Found) -> None:
    """Kubelet flags (``--cpu-manager-policy=static`` or ``cpu-manager-policy=static``) over the config."""
    values: dict[str, str] = {}
    reserved_memory: list[str] = []  # the one flag given several times (once per NUMA node)
    words = iter(args)
    for word in words:
        name, sep, value = word.lstrip("-").partition("=")
        if not sep:
            value = next(words, "")
        values[name] = value.strip("\"'")
        if name == "reserved-memory":
            reserved_memory += [v for v in values[name].split(";") if v.strip()]
    if values.get("config"):
        _merge_file(host, values["config"], found)
    for flag, key in FLAG_FIELDS.items():
        if flag in values:
            found.config[key] = values[flag]
            found.present = True
            found.path = found.path or path
    if "cpu-manager-policy-options" in values:
        found.config["cpuManagerPolicyOptions"] = _pairs(values["cpu-manager-policy-options"])
    if reserved_memory:
        found.config["reservedMemory"] = [{"numaNode": _node(node), "limits": _pairs(limits)}
                                          for node, _, limits in (e.partition(":") for e in reserved_memory)]


def _pairs(text: str) -> dict[str, str]:
    """``a=1,b=2`` as a mapping (the kubelet's map-valued flags)."""
    return {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in text.split(",")) if k.strip()}


def _node(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text.strip()


def _openshift(host: Host) -> _Found:
    found = _Found("openshift")
    # kubeadm keeps its kubelet kubeconfig (kind: Config) at the same path: only a KubeletConfiguration counts.
    _merge_file(host, OPENSHIFT_CONFIG, found, kind_required=True)
    if not found.readable:
        found.present = False  # kubeadm's kubeconfig is root-only: unreadable says nothing about OpenShift
    return found


def _rancher(host: Host) -> _Found:
    for flavour in RANCHER:
        found = _Found(flavour)
        _merge_dropins(host, f"/var/lib/rancher/{flavour}/agent/etc/kubelet.conf.d", found)
        etc = f"/etc/rancher/{flavour}"
        files = [f"{etc}/config.yaml"] + [f"{etc}/config.yaml.d/{n}" for n in host.listdir(f"{etc}/config.yaml.d")
                                          if n.endswith((".yaml", ".yml"))]
        for path in files:
            text = _read(host, path, found)
            if text is None:
                continue
            data = _yaml(host, path, text)
            for key in ("kubelet-arg", "kubelet-arg+"):  # "+": appended to the earlier files' list
                args = data.get(key) or []
                _merge_flags(host, path, [str(a) for a in (args if isinstance(args, list) else [args])], found)
        if found.present:
            return found
    return _Found()


def _microk8s(host: Host) -> _Found:
    found = _Found("microk8s")
    text = _read(host, MICROK8S_ARGS, found)
    if text is not None:
        found.present, found.path = True, MICROK8S_ARGS
        _merge_flags(host, MICROK8S_ARGS, _args_file_words(text), found)
    return found


def _kubeadm(host: Host) -> _Found:
    found = _Found("kubeadm")
    if not _merge_file(host, KUBEADM_CONFIG, found) and found.readable:
        return _Found()
    _merge_dropins(host, "/etc/kubernetes/kubelet.conf.d", found)
    env = host.read_text("/var/lib/kubelet/kubeadm-flags.env")
    for line in (env or "").splitlines():
        if line.startswith("KUBELET_KUBEADM_ARGS="):
            import shlex  # only a host with kubeadm's flags file pays for it

            _merge_flags(host, "/var/lib/kubelet/kubeadm-flags.env",
                         shlex.split(line.partition("=")[2].strip().strip("\"'")), found)
    return found


def _others(host: Host) -> _Found:
    for path in OTHER_CONFIGS:
        found = _Found(None)
        if _merge_file(host, path, found) or not found.readable:
            return found
    return _Found()


def _args_file_words(text: str) -> list[str]:
    import shlex  # only MicroK8s hosts have an args file

    words: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            words += shlex.split(line)
    return words


def _policy(host: Host, path: str, config: dict, key: str) -> str | None:
    """A policy name; anything but a string (a list, a number) is unknown, with a warning."""
    value = config.get(key)
    if value is None or isinstance(value, str):
        return value
    host.warn(path, f"{key}: expected a policy name, found {type(value).__name__}; reported as unknown")
    return None


def _reserved(host: Host, path: str, value: object) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        host.warn(path, f"reservedSystemCPUs: expected a cpulist, found {type(value).__name__}")
        return None
    try:
        return parse_cpulist(str(value))
    except ValueError as exc:
        host.warn(path, f"reservedSystemCPUs: {exc}")
        return None


def effective_config(host: Host) -> dict[str, Any]:
    """The merged KubeletConfiguration as the kubelet reads it (file, drop-ins, flags): what prep compares
    its desired settings with. Empty when no configuration is found."""
    return dict(_find(host).config)
