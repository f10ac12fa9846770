"""Live sources: small adapters over libvirt, NVML and ``/proc`` that return plain dataclasses.

These are the only things read at scrape time (everything else comes from the Inventory). The
libraries behind them are imported lazily, so nodeagent starts and runs without libvirt-python or
nvidia-ml-py installed; an adapter whose library is missing raises :class:`SourceUnavailableError`.
"""

from __future__ import annotations


class SourceUnavailableError(Exception):
    """A live source that cannot be used right now (library missing, daemon down, driver not loaded)."""
