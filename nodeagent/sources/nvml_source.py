"""NVML (nvidia-ml-py), as plain data: live readings of the GPUs bound to the host nvidia driver.

GPUs on vfio-pci are invisible to NVML (the host driver does not own them); their sysfs facts come
from the Inventory instead. Every reading is read-only: nothing here changes clocks, power limits,
persistence or compute modes.

* ``pynvml`` is imported and ``nvmlInit`` called on first use, then kept. When either fails (no
  library, driver not loaded, library/driver mismatch) :class:`NvmlSource` raises
  :class:`~nodeagent.sources.SourceUnavailableError` and does not try again before
  ``retry_interval_s`` has passed, so a host without a driver pays nothing per scrape.
* A reading a GPU does not support (``NVML_ERROR_NOT_SUPPORTED``, e.g. energy on older boards) is
  ``None``; a GPU that fails as a whole (``GPU_IS_LOST``) is left out and the others reported.
* A call that reports NVML uninitialized or the driver gone drops the session; the next read
  re-initializes.
* Memory is read with ``nvmlDeviceGetMemoryInfo_v2`` where the driver has it: ``used`` then
  excludes the memory the driver reserves for itself (reported as ``reserved``), as nvidia-smi
  shows it. The v1 call counts the reservation as used (616 MiB on an idle H200).
* The energy counter is the one slow reading: ~3 ms per GPU, up to 16 ms, measured on an H200
  with driver 580 (every other reading takes microseconds). A scrape therefore serves the last
  energy value and, when it is older than ``energy_max_age_s``, refreshes all GPUs' counters in
  a background thread; only a GPU's first reading waits for the driver.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from nodeagent.sources import SourceUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class NvmlGpuSample:
    pci_address: str  # "0000:17:00.0", the same form as the Inventory's
    name: str | None
    uuid: str | None
    utilization_ratio: float | None  # 0..1, over the driver's last sample period
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    memory_reserved_bytes: int | None  # held by the driver itself (v2 API only)
    temperature_celsius: float | None
    power_watts: float | None
    power_limit_watts: float | None
    energy_joules: float | None  # since the driver was loaded (a counter)


@dataclass(frozen=True)
class NvmlReading:
    driver_version: str | None
    gpus: list[NvmlGpuSample]


def normalize_bus_id(bus_id: str | bytes) -> str:
    """NVML's ``00000000:17:00.0`` (8-digit domain, upper case) → sysfs's ``0000:17:00.0``."""
    text = bus_id.decode() if isinstance(bus_id, bytes) else bus_id
    text = text.strip().rstrip("\0").lower()
    domain, _, rest = text.rpartition(":")
    domain_part, _, bus = domain.rpartition(":")
    return f"{int(domain_part or '0', 16):04x}:{bus}:{rest}"


class NvmlSource:
    """A kept NVML session. Thread-safe; NVML itself is thread-safe."""

    def __init__(self, *, retry_interval_s: float = 60.0, energy_max_age_s: float = 15.0) -> None:
        self._retry_interval_s = retry_interval_s
        self._energy_max_age_s = energy_max_age_s
        self._nvml: ModuleType | None = None
        self._failed_at: float | None = None
        self._failure = ""
        self._lock = threading.Lock()
        self._energy: dict[str, tuple[float | None, float, Any]] = {}  # address → (joules, read at, handle)
        self._energy_refresh: threading.Thread | None = None
        self._energy_lock = threading.Lock()

    def read(self) -> NvmlReading:
        nvml = self._session()
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            self._lose_session_if_needed(nvml, exc)
            raise SourceUnavailableError(f"NVML: cannot count GPUs: {exc}") from exc
        gpus: list[NvmlGpuSample] = []
        for index in range(count):
            try:
                gpus.append(self._sample(nvml, nvml.nvmlDeviceGetHandleByIndex(index)))
            except nvml.NVMLError as exc:
                self._lose_session_if_needed(nvml, exc)
                log.warning("NVML: GPU %d unreadable: %s", index, exc)
        driver = self._optional(nvml, nvml.nvmlSystemGetDriverVersion)
        self._refresh_energy_if_stale(nvml)
        return NvmlReading(driver_version=_text(driver) if driver is not None else None, gpus=gpus)

    def wait_energy_refresh(self, timeout_s: float = 30.0) -> None:
        """Wait for a background energy refresh to finish (tests, shutdown)."""
        refresh = self._energy_refresh
        if refresh is not None:
            refresh.join(timeout_s)

    def close(self) -> None:
        self.wait_energy_refresh()
        with self._lock:
            if self._nvml is not None:
                try:
                    self._nvml.nvmlShutdown()
                except Exception:  # closing is best effort
                    log.debug("nvmlShutdown failed", exc_info=True)
                self._nvml = None

    # internals

    def _session(self) -> ModuleType:
        with self._lock:
            if self._nvml is not None:
                return self._nvml
            now = time.monotonic()
            if self._failed_at is not None and now - self._failed_at < self._retry_interval_s:
                raise SourceUnavailableError(self._failure)
            try:
                import pynvml
            except ImportError as exc:
                self._fail(now, "nvidia-ml-py is not installed (pip install nodeagent[nvml])")
                raise SourceUnavailableError(self._failure) from exc
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as exc:
                self._fail(now, f"NVML cannot initialize: {exc}")
                raise SourceUnavailableError(self._failure) from exc
            self._failed_at = None
            self._nvml = pynvml
            return pynvml

    def _fail(self, now: float, message: str) -> None:
        if message != self._failure:
            log.info("%s", message)
        self._failed_at, self._failure = now, message

    def _lose_session_if_needed(self, nvml: ModuleType, exc: Exception) -> None:
        lost = tuple(getattr(nvml, name) for name in ("NVMLError_Uninitialized", "NVMLError_DriverNotLoaded",
                                                       "NVMLError_LibRmVersionMismatch") if hasattr(nvml, name))
        if isinstance(exc, lost):
            with self._lock:
                self._nvml = None

    def _optional(self, nvml: ModuleType, call: Callable[..., T], *args: Any) -> T | None:
        """One reading; None when this GPU does not support it or it fails on its own."""
        try:
            return call(*args)
        except nvml.NVMLError_GpuIsLost:
            raise
        except nvml.NVMLError as exc:
            log.debug("NVML %s: %s", getattr(call, "__name__", call), exc)
            return None

    def _memory(self, nvml: ModuleType, handle: Any) -> Any:
        version = getattr(nvml, "nvmlMemory_v2", None)
        if version is not None:
            try:
                return nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
            except nvml.NVMLError_GpuIsLost:
                raise
            except nvml.NVMLError as exc:  # a driver older than the v2 call (before R510)
                log.debug("NVML memory v2: %s; using v1", exc)
        return self._optional(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)

    def _energy_joules(self, nvml: ModuleType, handle: Any, address: str) -> float | None:
        with self._energy_lock:
            known = self._energy.get(address)
        if known is not None:
            return known[0]
        joules = self._read_energy(nvml, handle)
        with self._energy_lock:
            self._energy[address] = (joules, time.monotonic(), handle)
        return joules

    def _read_energy(self, nvml: ModuleType, handle: Any) -> float | None:
        try:
            millijoules = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except nvml.NVMLError as exc:
            log.debug("NVML energy: %s", exc)
            return None
        return millijoules / 1000.0

    def _refresh_energy_if_stale(self, nvml: ModuleType) -> None:
        now = time.monotonic()
        with self._energy_lock:
            stale = [(a, h) for a, (_, at, h) in self._energy.items() if now - at >= self._energy_max_age_s]
            if not stale or (self._energy_refresh is not None and self._energy_refresh.is_alive()):
                return

            def refresh() -> None:
                for address, handle in stale:
                    joules = self._read_energy(nvml, handle)
                    with self._energy_lock:
                        self._energy[address] = (joules, time.monotonic(), handle)

            self._energy_refresh = threading.Thread(target=refresh, name="nvml-energy", daemon=True)
            self._energy_refresh.start()

    def _sample(self, nvml: ModuleType, handle: Any) -> NvmlGpuSample:
        pci = nvml.nvmlDeviceGetPciInfo(handle)  # no address, no sample: let it raise
        bus_id = getattr(pci, "busId", None) or getattr(pci, "busIdLegacy", None)
        if not isinstance(bus_id, str | bytes):
            raise nvml.NVMLError(nvml.NVML_ERROR_UNKNOWN)  # a GPU without an address cannot be joined
        address = normalize_bus_id(bus_id)
        util = self._optional(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
        memory = self._memory(nvml, handle)
        temperature = self._optional(nvml, nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
        power_mw = self._optional(nvml, nvml.nvmlDeviceGetPowerUsage, handle)
        limit_mw = self._optional(nvml, nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        name = self._optional(nvml, nvml.nvmlDeviceGetName, handle)
        uuid = self._optional(nvml, nvml.nvmlDeviceGetUUID, handle)
        reserved = getattr(memory, "reserved", None) if memory is not None else None
        return NvmlGpuSample(
            pci_address=address,
            name=_text(name) if name is not None else None,
            uuid=_text(uuid) if uuid is not None else None,
            utilization_ratio=util.gpu / 100.0 if util is not None else None,
            memory_used_bytes=int(memory.used) if memory is not None else None,
            memory_total_bytes=int(memory.total) if memory is not None else None,
            memory_reserved_bytes=int(reserved) if isinstance(reserved, int) else None,
            temperature_celsius=float(temperature) if temperature is not None else None,
            power_watts=power_mw / 1000.0 if power_mw is not None else None,
            power_limit_watts=limit_mw / 1000.0 if limit_mw is not None else None,
            energy_joules=self._energy_joules(nvml, handle, address),
        )


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
