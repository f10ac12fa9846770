"""Structured logs for the daemon: one JSON object per line on stderr.

A DaemonSet's logs are read by machines first (Loki, Elasticsearch, ``kubectl logs | jq``), so
every line carries a timestamp, a level, the logger and the message, plus the fields a call adds
with ``extra=`` (``trigger``, ``duration_s``, ``profile`` …), which can then be filtered on
without parsing prose. ``--log-format text`` keeps the plain format for a person at a terminal.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """``{"time": ..., "level": ..., "logger": ..., "msg": ..., <extra fields>, "exc": ...}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.threadName and record.threadName != "MainThread":
            entry["thread"] = record.threadName
        return json.dumps(entry, default=str, ensure_ascii=False)


def _rfc3339(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def configure_logging(level: str, fmt: str = "json") -> None:
    """Replace the root logger's handlers with one stderr handler in ``fmt`` (json | text)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The kubernetes client and urllib3 log every retry and connection at INFO/WARNING: the
    # publisher already reports what matters once, with context.
    for noisy in ("urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
