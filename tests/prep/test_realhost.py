"""Real-host prep on this machine's kernel (marker ``realhost``): hugepages and KSM only.

Every test restores what was there through the ``real_host_state`` fixture, even on failure.
No test here touches a PCI device, the bootloader, or the CPU governor of a real host beyond
what the profile in each test asks (and this machine has no cpufreq).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.host import Host
from nodeagent.prep.apply import revert
from tests.prep.helpers import applied, planned

pytestmark = pytest.mark.realhost

NODE0 = Path("/sys/devices/system/node/node0")
POOL_2M = NODE0 / "hugepages/hugepages-2048kB"
POOL_1G = NODE0 / "hugepages/hugepages-1048576kB"
KSM = Path("/sys/kernel/mm/ksm")


def _int(path: Path) -> int:
    return int(path.read_text().strip())


def _meminfo_hugetlb_kb() -> int:
    line = next(x for x in (NODE0 / "meminfo").read_text().splitlines() if "HugePages_Total" in x)
    return int(line.split()[-1])


def test_2m_pages_on_node0_allocate_and_free(real_host_state: dict[str, str]) -> None:
    host = Host("/")
    start = _int(POOL_2M / "nr_hugepages")
    want = start + 32
    result = applied(host, {"hugepages": {"pages": [{"size": "2Mi", "count": want, "numaNode": 0}]}},
                     allocation_timeout_s=5)
    assert result.exit_code == 0, result.failure
    assert _int(POOL_2M / "nr_hugepages") == want
    assert _int(POOL_2M / "free_hugepages") >= 32  # the new pages are free, as the kernel counts them
    assert revert(host).exit_code == 0
    assert _int(POOL_2M / "nr_hugepages") == start
    assert str(POOL_2M / "nr_hugepages") in real_host_state


def test_1g_outcome_matches_the_kernel_counters(real_host_state: dict[str, str]) -> None:
    if not POOL_1G.is_dir():
        pytest.skip("this kernel offers no 1Gi pages")
    host = Host("/")
    start = _int(POOL_1G / "nr_hugepages")
    result = applied(host, {"hugepages": {"pages": [{"size": "1Gi", "count": start + 1, "numaNode": 0}]}},
                     allocation_timeout_s=2)
    (outcome,) = [o for o in result.outcomes if o.change.subsystem == "hugepages"]
    got = _int(POOL_1G / "nr_hugepages")
    if outcome.status == "applied":
        assert result.exit_code == 0 and got == start + 1
    else:  # the kernel could not find a gigantic page: runtime rolled back, boot line written
        assert outcome.status == "deferred-to-boot", outcome
        assert result.exit_code == 3 and result.reboot_required
        assert got == start
        dropin = Path("/etc/default/grub.d/90-nodeagent.cfg").read_text()
        assert "hugepagesz=1G hugepages=0:" in dropin
    assert revert(host).exit_code == 0
    assert _int(POOL_1G / "nr_hugepages") == start
    assert not Path("/etc/default/grub.d/90-nodeagent.cfg").exists() or \
        "hugepagesz=1G" not in Path("/etc/default/grub.d/90-nodeagent.cfg").read_text()


def test_ksm_on_and_off_with_parameters(real_host_state: dict[str, str]) -> None:
    host = Host("/")
    result = applied(host, {"ksm": {"enabled": True, "pagesToScan": 321, "sleepMillisecs": 37}})
    assert result.exit_code == 0, result.failure
    assert (_int(KSM / "run"), _int(KSM / "pages_to_scan"), _int(KSM / "sleep_millisecs")) == (1, 321, 37)
    result = applied(host, {"ksm": {"enabled": False}})
    assert result.exit_code == 0, result.failure
    assert _int(KSM / "run") == 0
    assert _int(KSM / "pages_sharing") == 0  # run=2 unmerged everything
    assert revert(host).exit_code == 0
    assert str(_int(KSM / "run")) == real_host_state[str(KSM / "run")]
    assert str(_int(KSM / "pages_to_scan")) == real_host_state[str(KSM / "pages_to_scan")]


def test_apply_again_writes_nothing_and_revert_restores_exactly(real_host_state: dict[str, str]) -> None:
    host = Host("/")
    start = _int(POOL_2M / "nr_hugepages")
    spec = {"hugepages": {"pages": [{"size": "2Mi", "count": start + 16, "numaNode": 0}]},
            "ksm": {"enabled": True, "pagesToScan": 555, "sleepMillisecs": 25},
            "cpu": {"governor": "performance"}}
    result = applied(host, spec, boot=False)
    assert result.exit_code == 0, result.failure
    with host.recording() as since:
        _, plan = planned(host, spec, boot=False)
        assert plan.changes == []
        again = applied(host, spec, boot=False)
        assert again.exit_code == 0 and again.outcomes == []
    assert since.stats.writes == 0
    assert revert(host).exit_code == 0
    for path, value in real_host_state.items():
        assert Path(path).read_text().strip() == value, path
    assert not Path("/etc/nodeagent/profile.yaml").exists() or "profile" in str(real_host_state)
    assert not Path("/var/lib/nodeagent/journal.json").exists()
