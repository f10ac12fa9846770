"""The VM workloads nodeagent prepares hosts for (CONTRACT §4); light enough for CLI option lists."""

WORKLOADS = ("general", "high-density", "database", "hpc", "ai-training", "realtime")
