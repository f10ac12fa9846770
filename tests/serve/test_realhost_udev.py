"""The live uevent path on this machine: a CPU taken offline and back is seen by ``serve --root /``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.exposition import scrape_value
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.realhost]

ONLINE = Path("/sys/devices/system/cpu/cpu1/online")


def test_cpu_offline_and_online_trigger_a_re_inventory(serve_factory) -> None:
    if os.geteuid() != 0 or not ONLINE.exists() or not os.access(ONLINE, os.W_OK):
        pytest.skip("needs root and a hot-pluggable CPU 1")
    if ONLINE.read_text().strip() != "1":
        pytest.skip("CPU 1 is offline already")
    serve = serve_factory(Path("/"), "--no-publish", "--no-libvirt", "--no-nvml", "--interval", "3600",
                          "--uevents", "udev", "--event-debounce", "0.2")
    serve.wait_serving()
    serve.wait_ready()
    serve.wait_log(lambda r: r.get("msg") == "listening for PCI and CPU uevents (udev)", 5, "the udev source")
    try:
        ONLINE.write_text("0")
        wait_for(lambda: scrape_value(serve.get("/metrics")[1], "nodeagent_reconciles_total", trigger="uevent"),
                 10, "a reconcile triggered by the offline uevent")
    finally:
        ONLINE.write_text("1")
    wait_for(lambda: (scrape_value(serve.get("/metrics")[1], "nodeagent_uevents_total") or 0) >= 2, 10,
             "the online uevent")
    assert serve.stop() == 0
