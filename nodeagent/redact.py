"""Credentials in the host files a capture packs: boot arguments and the kubelet config.

``capture`` copies the files discovery read. Two of them can carry secrets in their *content*:
the kernel command line (``rd.iscsi.password=…``, ``ipa.token=…`` and the like, which initramfs
tools take from there) and the kubelet config (``authentication``/``authorization`` and
``staticPodURLHeader`` may hold tokens). Their values are replaced by :data:`REDACTED`; the
keys stay, so the capture still shows *that* such an argument or field was set, and every
fact discovery takes from these files (CPU isolation, IOMMU, kubelet policies) is unchanged.
Each redaction is reported as ``path: name`` for the capture's manifest.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "<redacted>"

#: A key naming a credential: matched anywhere in a boot argument's or config field's name,
#: case-insensitively (``rd.iscsi.password``, ``bootToken``, ``client_secret``, ``apiKey``).
SECRET_NAME = re.compile(r"pass(word|wd|phrase)|token|secret|credential|api[-_.]?key|private[-_.]?key",
                         re.IGNORECASE)

#: Kubelet config fields whose whole subtree is redacted: they configure who may call the
#: kubelet and with what (webhook tokens, static-pod URL headers such as ``Authorization``).
KUBELET_AUTH_FIELDS = frozenset({"authentication", "authorization", "staticPodURLHeader"})

#: Files whose content is a kernel command line (or sets one: grub's defaults and drop-ins), or
#: kubelet flags (MicroK8s' args file, kubeadm's flags file): ``name=value`` words.
_ARGUMENT_PATHS = re.compile(r"^/proc/cmdline$|^/etc/kernel/cmdline$|^/etc/default/grub(\.d/.*)?$"
                             r"|^/var/snap/microk8s/current/args/kubelet$|^/var/lib/kubelet/kubeadm-flags\.env$")

#: Kubelet configuration files of every flavour discovery reads (discover/kubelet.py), and k3s/RKE2's
#: config.yaml, which carries the cluster join ``token``.
_KUBELET_CONFIG_PATHS = re.compile(
    r"^/var/lib/kubelet/config\.yaml$|^/etc/kubernetes/kubelet(/config)?\.yaml$|^/etc/kubernetes/kubelet\.conf$"
    r"|/kubelet\.conf\.d/[^/]+$|^/etc/rancher/[^/]+/config\.yaml(\.d/[^/]+)?$")

# A boot argument: a key, "=", and a value that may be double-quoted (the kernel honours quotes).
_BOOT_ARG = re.compile(r'(?<![^\s"\'])(?P<key>[^\s="\']+)=(?P<value>"[^"]*"?|[^\s"\']*)')


def redact_file(path: str, data: bytes) -> tuple[bytes, list[str]]:
    """The content to pack for ``path`` and the names redacted in it (empty: packed as read)."""
    if _ARGUMENT_PATHS.search(path):
        text, names = redact_cmdline(data.decode("utf-8", errors="surrogateescape"))
    elif _KUBELET_CONFIG_PATHS.search(path):
        text, names = redact_kubelet_config(data.decode("utf-8", errors="surrogateescape"))
    else:
        return data, []
    if not names:
        return data, []
    return text.encode("utf-8", errors="surrogateescape"), names


def redact_cmdline(text: str) -> tuple[str, list[str]]:
    """Replace the value of every ``*password*=``/``*token*=``/``*secret*=``-style argument."""
    names: list[str] = []

    def replace(match: re.Match[str]) -> str:
        key = match.group("key")
        if not SECRET_NAME.search(key):
            return match.group(0)
        names.append(key)
        quoted = match.group("value").startswith('"')
        return f'{key}="{REDACTED}"' if quoted else f"{key}={REDACTED}"

    return _BOOT_ARG.sub(replace, text), names


def redact_kubelet_config(text: str) -> tuple[str, list[str]]:
    """Redact the auth subtrees and every credential-named field of a KubeletConfiguration.

    A config that parses as a mapping is re-emitted as YAML with those values replaced (the
    layout changes; every other value is kept as parsed). One that does not parse cannot be
    walked: it is redacted line by line (``name: value`` and ``name=value`` forms).
    """
    import yaml

    try:
        config = yaml.safe_load(text)
    except Exception:  # any parse failure (YAMLError, or PyYAML's ValueErrors): the line fallback
        config = None
    if not isinstance(config, dict):
        return _redact_lines(text)
    names: list[str] = []
    redacted = _redact_tree(config, "", names)
    if not names:
        return text, []
    header = "# nodeagent capture: credential fields redacted (see NODEAGENT-CAPTURE.json)\n"
    return header + yaml.safe_dump(redacted, sort_keys=False, default_flow_style=False), names


def _redact_tree(value: Any, path: str, names: list[str]) -> Any:
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            dotted = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and (key in KUBELET_AUTH_FIELDS or SECRET_NAME.search(key)):
                names.append(dotted)
                out[key] = REDACTED
            else:
                out[key] = _redact_tree(item, dotted, names)
        return out
    if isinstance(value, list):
        return [_redact_tree(item, f"{path}[{i}]", names) for i, item in enumerate(value)]
    if isinstance(value, str) and "=" in value:
        # A flag inside the config (k3s' kubelet-arg: ["bootstrap-token=…"]).
        text, found = redact_cmdline(value)
        names.extend(f"{path}: {name}" for name in found)
        return text
    return value


_LINE_FIELD = re.compile(r"^(?P<lead>\s*-?\s*[\"']?)(?P<key>[A-Za-z0-9_.-]+)(?P<sep>[\"']?\s*[:=]\s*)(?P<rest>.*)$")


def _redact_lines(text: str) -> tuple[str, list[str]]:
    names: list[str] = []
    lines = []
    for line in text.splitlines(keepends=True):
        match = _LINE_FIELD.match(line)
        key = match.group("key") if match else ""
        if match and (key in KUBELET_AUTH_FIELDS or SECRET_NAME.search(key)) and match.group("rest").strip():
            names.append(key)
            ending = "\n" if line.endswith("\n") else ""
            lines.append(f"{match.group('lead')}{key}{match.group('sep')}{REDACTED}{ending}")
        else:
            lines.append(line)
    return "".join(lines), names
