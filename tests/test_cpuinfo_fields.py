"""discover_cpu reads /proc/cpuinfo's fields from its distinct lines (first_values); that must be exactly
what merging every processor block gives, on every fixture and captured host, big.LITTLE included."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nodeagent.discover.cpuid import first_values, merged, parse_cpuinfo
from tests.support.hosts import CAPTURED_HOSTS

SPECS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "fixtures" / "specs").glob("*.yaml")
               if p.stem != "catalog")  # catalog.yaml holds the device models the host specs use


@pytest.mark.parametrize("name", SPECS + CAPTURED_HOSTS)
def test_first_values_equal_the_merged_blocks(name: str, host_trees: Callable[[str], Path]) -> None:
    cpuinfo = host_trees(name) / "proc" / "cpuinfo"
    if not cpuinfo.is_file():
        pytest.fail(f"{name} has no /proc/cpuinfo")
    text = cpuinfo.read_text()
    assert first_values(text) == merged(parse_cpuinfo(text))


def test_a_later_block_adds_keys_and_never_overrides() -> None:
    text = ("processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd05\n\n"
            "processor\t: 1\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0b\n\nHardware\t: Qualcomm\n")
    fields = first_values(text)
    assert fields == {"processor": "0", "BogoMIPS": "50.00", "CPU part": "0xd05", "Hardware": "Qualcomm"}
    assert fields == merged(parse_cpuinfo(text))
