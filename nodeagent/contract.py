"""The documented names (docs/) that option lists and defaults need, in a module light enough for CLI start."""

WORKLOADS = ("general", "high-density", "database", "hpc", "ai-training", "vgpu", "realtime")
DEFAULT_LABEL_PREFIX = "nodeagent.io"
