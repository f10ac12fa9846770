"""nodeagent: discovery, checks, labels, metrics and safe node prep for KubeVirt hosts."""

__version__ = "0.1.0"
