"""ABI checks on the generated host trees (fixtures/hostgen.py), with plain os/pathlib.

Each shipped spec is built once into a temporary directory; the tests then read the tree the way
a sysfs/procfs consumer would and assert facts that a careless generator would get wrong.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures import hostgen

SPECS = hostgen.spec_names()
HOSTS = ("intel-2s-8gpu", "amd-nps4-consumer", "rt-isolated", "desktop-no-iommu", "minimal")
ADDR = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
CPULIST = re.compile(r"^(\d+(-\d+)?(,\d+(-\d+)?)*)?$")


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("hosts")
    return {name: hostgen.build_host(name, base / name) for name in SPECS}


@pytest.fixture(params=SPECS)
def root(request: pytest.FixtureRequest, trees: dict[str, Path]) -> Path:
    return trees[request.param]


def read(root: Path, path: str) -> str:
    return (root / path.lstrip("/")).read_text()


def value(root: Path, path: str) -> str:
    text = read(root, path)
    assert text.endswith("\n"), f"{path}: sysfs values end with a newline"
    return text[:-1]


def cpus(text: str) -> list[int]:
    assert CPULIST.match(text), f"not a cpulist: {text!r}"
    return hostgen.parse_cpulist(text)


def mask_bits(mask: str) -> set[int]:
    number = int(mask.replace(",", ""), 16)
    return {i for i in range(number.bit_length()) if number >> i & 1}


def pci_devices(root: Path) -> dict[str, Path]:
    bus = root / "sys/bus/pci/devices"
    return {p.name: Path(os.path.realpath(p)) for p in sorted(bus.iterdir())}


def meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        out[key.split()[-1]] = int(rest.split()[0])
    return out


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, root).encode())
            if os.path.islink(path):
                digest.update(b"->" + os.readlink(path).encode())
            elif os.stat(path).st_mode & 0o444:
                digest.update(Path(path).read_bytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- generic ABI facts


def test_every_host_in_the_brief_has_a_spec() -> None:
    assert set(HOSTS) <= set(SPECS)


def test_symlinks_are_relative_and_resolve_inside_the_tree(root: Path) -> None:
    real_root = os.path.realpath(root)
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                continue
            count += 1
            target = os.readlink(path)
            assert not os.path.isabs(target), f"{path} -> {target} is absolute"
            assert not target.endswith(".."), f"{path} -> {target}: kernfs links name their target"
            resolved = os.path.realpath(path)
            assert resolved.startswith(real_root + os.sep), f"{path} -> {target} leaves the tree"
            assert os.path.exists(resolved), f"{path} -> {target} dangles"
    assert count > 0


def test_pci_bus_links_follow_the_bridge_hierarchy(root: Path) -> None:
    for addr, real in pci_devices(root).items():
        assert ADDR.match(addr)
        assert real.name == addr
        rel = real.relative_to(os.path.realpath(root / "sys/devices"))
        host, *hops = rel.parts
        assert host == f"pci{hops[0][:7]}", "a root bus only holds functions on its own bus"
        assert hops[-1] == addr
        for hop in hops[:-1]:  # everything above a function is a PCI-to-PCI bridge
            assert value(root, f"/sys/bus/pci/devices/{hop}/class").startswith("0x0604")
        link = os.readlink(root / "sys/bus/pci/devices" / addr)
        assert link == "../../../devices/" + "/".join(rel.parts)


def test_pci_attribute_formats(root: Path) -> None:
    for addr, dev in pci_devices(root).items():
        assert re.fullmatch(r"0x[0-9a-f]{6}\n", (dev / "class").read_text())
        for name in ("vendor", "device", "subsystem_vendor", "subsystem_device"):
            assert re.fullmatch(r"0x[0-9a-f]{4}\n", (dev / name).read_text()), f"{addr}/{name}"
        assert re.fullmatch(r"0x[0-9a-f]{2}\n", (dev / "revision").read_text())
        assert int((dev / "numa_node").read_text()) >= -1
        override = (dev / "driver_override").read_text()
        assert override == "(null)\n" or override.strip() in os.listdir(root / "sys/bus/pci/drivers")
        cls = int((dev / "class").read_text(), 16)
        assert (dev / "boot_vga").exists() == (cls >> 8 == 0x0300), f"{addr}: boot_vga only on VGA class"
        if (dev / "current_link_speed").exists():
            for name in ("current_link_speed", "max_link_speed"):
                assert re.fullmatch(r"(\d+\.\d GT/s PCIe|Unknown)\n", (dev / name).read_text())
            assert int((dev / "current_link_width").read_text()) <= int((dev / "max_link_width").read_text()) or (
                (dev / "physfn").exists())
        if (dev / "aer_dev_correctable").exists():
            for kind, total in (("correctable", "TOTAL_ERR_COR"), ("nonfatal", "TOTAL_ERR_NONFATAL"),
                                ("fatal", "TOTAL_ERR_FATAL")):
                rows = [line.split() for line in (dev / f"aer_dev_{kind}").read_text().splitlines()]
                assert rows[-1][0] == total
                assert int(rows[-1][1]) == sum(int(n) for _, n in rows[:-1])
        assert mask_bits(value(root, f"/sys/bus/pci/devices/{addr}/local_cpus")) == set(
            cpus(value(root, f"/sys/bus/pci/devices/{addr}/local_cpulist")))
        config = (dev / "config").read_bytes()
        assert len(config) == 64
        if not (dev / "physfn").exists():
            assert config[:2] == int((dev / "vendor").read_text(), 16).to_bytes(2, "little")


def test_local_cpulist_is_the_numa_node_cpulist(root: Path) -> None:
    everything = cpus(value(root, "/sys/devices/system/cpu/possible"))
    for addr, dev in pci_devices(root).items():
        node = int((dev / "numa_node").read_text())
        expected = cpus(value(root, f"/sys/devices/system/node/node{node}/cpulist")) if node >= 0 else everything
        assert cpus(value(root, f"/sys/bus/pci/devices/{addr}/local_cpulist")) == expected


def test_driver_links_point_both_ways(root: Path) -> None:
    drivers = root / "sys/bus/pci/drivers"
    for addr, dev in pci_devices(root).items():
        if not (dev / "driver").exists():
            continue
        driver = Path(os.path.realpath(dev / "driver"))
        assert driver.parent == Path(os.path.realpath(drivers))
        assert os.path.realpath(driver / addr) == str(dev)
        uevent = (dev / "uevent").read_text()
        assert f"DRIVER={driver.name}\n" in uevent
    for driver in drivers.iterdir():
        for name in ("bind", "unbind", "new_id", "remove_id"):
            stat = (driver / name).stat()
            assert stat.st_size == 0 and stat.st_mode & 0o200, f"{driver.name}/{name}: an empty writable stand-in"
        if (driver / "module").exists():
            module = Path(os.path.realpath(driver / "module"))
            assert module.parent.name == "module"
            assert os.path.realpath(module / "drivers" / f"pci:{driver.name}") == os.path.realpath(driver)


def test_iommu_group_links_agree(root: Path) -> None:
    groups = root / "sys/kernel/iommu_groups"
    assert groups.is_dir(), "the iommu_groups kset exists even without an IOMMU"
    devices = pci_devices(root)
    for addr, dev in devices.items():
        if not (dev / "iommu_group").exists():
            continue
        group = Path(os.path.realpath(dev / "iommu_group"))
        assert group.parent == Path(os.path.realpath(groups))
        assert os.path.realpath(group / "devices" / addr) == str(dev), f"group {group.name} must list {addr}"
    mdevs = root / "sys/bus/mdev/devices"
    for group in groups.iterdir():
        members = os.listdir(group / "devices")
        assert members
        if all((mdevs / m).exists() for m in members):  # vfio's emulated group of a mediated device
            assert value(root, f"/sys/kernel/iommu_groups/{group.name}/type") == "unknown"
            assert [os.path.realpath(mdevs / m / "iommu_group") for m in members] == [os.path.realpath(group)]
            continue
        assert value(root, f"/sys/kernel/iommu_groups/{group.name}/type") in ("DMA", "DMA-FQ", "identity")
        for addr in members:
            assert os.path.realpath(devices[addr] / "iommu_group") == os.path.realpath(group)


def test_iommu_presence_matches_firmware_and_cmdline(root: Path) -> None:
    tables = root / "sys/firmware/acpi/tables"
    has_groups = any((root / "sys/kernel/iommu_groups").iterdir())
    for sig in ("DMAR", "IVRS"):
        table = tables / sig
        if table.exists():
            data = table.read_bytes()
            assert data[:4] == sig.encode()
            assert int.from_bytes(data[4:8], "little") == len(data)
            assert sum(data) % 256 == 0, "ACPI tables checksum to zero"
    if has_groups:
        assert (tables / "DMAR").exists() or (tables / "IVRS").exists()
        units = os.listdir(root / "sys/class/iommu")
        assert units and all(re.fullmatch(r"dmar\d+|ivhd\d+", u) for u in units)
        cmdline = read(root, "/proc/cmdline")
        assert "intel_iommu=on" in cmdline or "amd_iommu=on" in cmdline


def test_sriov_links(root: Path) -> None:
    for addr, dev in pci_devices(root).items():
        if not (dev / "sriov_totalvfs").exists():
            continue
        num = int((dev / "sriov_numvfs").read_text())
        assert num <= int((dev / "sriov_totalvfs").read_text())
        vfs = sorted(p for p in os.listdir(dev) if p.startswith("virtfn"))
        assert len(vfs) == num
        for i in range(num):
            link = os.readlink(dev / f"virtfn{i}")
            assert link.startswith("../") and link.count("/") == 1
            vf = Path(os.path.realpath(dev / f"virtfn{i}"))
            assert os.readlink(vf / "physfn") == f"../{addr}"
            assert os.path.realpath(vf / "physfn") == str(dev)
            assert (vf / "device").read_text().strip()[2:] == (dev / "sriov_vf_device").read_text().strip()


def test_cpu_lists_and_topology(root: Path) -> None:
    base = "/sys/devices/system/cpu"
    possible = cpus(value(root, f"{base}/possible"))
    online = cpus(value(root, f"{base}/online"))
    offline = cpus(value(root, f"{base}/offline"))
    assert possible == cpus(value(root, f"{base}/present")) == sorted(online + offline)
    assert int(value(root, f"{base}/kernel_max")) >= len(possible) - 1
    assert set(cpus(value(root, f"{base}/isolated"))) <= set(possible)
    nohz = value(root, f"{base}/nohz_full")
    assert nohz == "(null)" or set(cpus(nohz)) <= set(possible)
    assert not (root / "sys/devices/system/cpu/cpu0/online").exists()
    for cpu in possible:
        topo = root / f"sys/devices/system/cpu/cpu{cpu}/topology"
        if cpu in offline:
            assert not topo.exists()
            continue
        siblings = cpus((topo / "thread_siblings_list").read_text().strip())
        assert cpu in siblings
        assert mask_bits((topo / "thread_siblings").read_text().strip()) == set(siblings)
        package = cpus((topo / "package_cpus_list").read_text().strip())
        for other in siblings + package[:1]:
            other_topo = root / f"sys/devices/system/cpu/cpu{other}/topology"
            assert (other_topo / "physical_package_id").read_text() == (topo / "physical_package_id").read_text()
        for other in siblings:
            assert (root / f"sys/devices/system/cpu/cpu{other}/topology/core_id").read_text() == (
                topo / "core_id").read_text()


def _arch(root: Path) -> str:
    return hostgen.read_summary(root).get("arch", "x86_64")


def test_cpuinfo_has_one_block_per_online_cpu(root: Path) -> None:
    online = cpus(value(root, "/sys/devices/system/cpu/online"))
    text = read(root, "/proc/cpuinfo")
    arch = _arch(root)
    if arch == "s390x":  # a summary (one "processor N:" line per online CPU), then "cpu number" blocks
        assert re.findall(r"^processor (\d+): version", text, re.MULTILINE) == [str(c) for c in online]
        assert re.findall(r"^cpu number      : (\d+)$", text, re.MULTILINE) == [str(c) for c in online]
        return
    blocks = [b for b in text.split("\n\n") if b.strip()]
    if arch == "ppc64le":  # the machine trailer follows the per-CPU blocks
        assert blocks.pop().startswith("timebase\t: ")
    assert len(blocks) == len(online)
    for block, cpu in zip(blocks, online, strict=True):
        fields = dict(re.match(r"^([^\t:]+?)\t*: ?(.*)$", line).groups() for line in block.splitlines())
        assert int(fields["processor"]) == cpu
        if arch == "aarch64":
            assert re.fullmatch(r"0x[0-9a-f]{2}", fields["CPU implementer"])
            assert re.fullmatch(r"0x[0-9a-f]{3}", fields["CPU part"]) and fields["CPU architecture"] == "8"
            continue
        if arch == "ppc64le":
            assert fields["cpu"].startswith("POWER") and "pvr" in fields["revision"]
            continue
        topo = f"/sys/devices/system/cpu/cpu{cpu}/topology"
        assert fields["physical id"] == value(root, f"{topo}/physical_package_id")
        assert fields["core id"] == value(root, f"{topo}/core_id")
        package = cpus(value(root, f"{topo}/package_cpus_list"))
        assert int(fields["siblings"]) == len(package)
        assert "flags" in fields and "model name" in fields and "vendor_id" in fields


def test_numa_nodes_partition_the_cpus(root: Path) -> None:
    base = "/sys/devices/system/node"
    nodes = cpus(value(root, f"{base}/online"))
    possible = cpus(value(root, "/sys/devices/system/cpu/possible"))
    seen: list[int] = []
    for node in nodes:
        node_cpus = cpus(value(root, f"{base}/node{node}/cpulist"))
        seen += node_cpus
        assert mask_bits(value(root, f"{base}/node{node}/cpumap")) == set(node_cpus)
        groups = value(root, f"{base}/node{node}/cpumap").split(",")
        assert all(len(g) == 8 for g in groups[1:]), "32-bit groups of 8 hex digits after the first"
        distance = [int(x) for x in value(root, f"{base}/node{node}/distance").split()]
        assert len(distance) == len(nodes) and distance[nodes.index(node)] == 10 and min(distance) == 10
        for cpu in node_cpus:
            assert os.readlink(root / f"sys/devices/system/node/node{node}/cpu{cpu}") == f"../../cpu/cpu{cpu}"
    assert sorted(seen) == possible


def test_memory_figures_add_up(root: Path) -> None:
    proc = meminfo(read(root, "/proc/meminfo"))
    nodes = cpus(value(root, "/sys/devices/system/node/online"))
    node_total = 0
    line = re.compile(r"^Node \d+ (\S+:\s+\d+ kB|HugePages_\w+:\s+\d+)$")
    for node in nodes:
        text = read(root, f"/sys/devices/system/node/node{node}/meminfo")
        assert all(line.match(row) for row in text.splitlines()), text
        figures = meminfo(text)
        assert figures["MemUsed"] == figures["MemTotal"] - figures["MemFree"]
        node_total += figures["MemTotal"]
    assert node_total == proc["MemTotal"]
    size_kb = proc["Hugepagesize"]
    hugetlb = 0
    for pool in (root / "sys/kernel/mm/hugepages").iterdir():
        kb = int(pool.name.removeprefix("hugepages-").removesuffix("kB"))
        total = int((pool / "nr_hugepages").read_text())
        for name in ("nr_hugepages", "free_hugepages", "surplus_hugepages"):
            per_node = sum(int(value(root, f"/sys/devices/system/node/node{n}/hugepages/{pool.name}/{name}"))
                           for n in nodes)
            assert per_node == int((pool / name).read_text()), f"{pool.name}/{name}: nodes must sum to global"
        assert int((pool / "free_hugepages").read_text()) <= total
        hugetlb += kb * total
        if kb == size_kb:
            assert proc["HugePages_Total"] == total
            assert proc["HugePages_Free"] == int((pool / "free_hugepages").read_text())
            assert int(value(root, "/proc/sys/vm/nr_hugepages")) == total
    assert proc["Hugetlb"] == hugetlb


def test_proc_meminfo_layout(root: Path) -> None:
    for row in read(root, "/proc/meminfo").splitlines():
        label = row.split(":")[0]
        if label == "HardwareCorrupted":
            assert re.fullmatch(r"HardwareCorrupted: +\d+ kB", row)
        elif label.startswith("HugePages_"):
            assert re.fullmatch(r"\S+: +\d+", row) and len(row) >= 24
        else:
            assert re.fullmatch(r"\S+: +\d+ kB", row) and row.index(" kB") >= 24, row


def test_kernel_modules_are_consistent(root: Path) -> None:
    rows = read(root, "/proc/modules").splitlines()
    names = {row.split()[0] for row in rows}
    row_re = re.compile(r"^(\w+) (\d+) (\d+) (-|(\w+,)+) Live 0x0{16}( \([A-Z]+\))?$")
    for row in rows:
        match = row_re.match(row)
        assert match, row
        name, _, refs, users = match.group(1, 2, 3, 4)
        user_list = [] if users == "-" else users.rstrip(",").split(",")
        assert int(refs) == len(user_list)
        assert set(user_list) <= names
        assert value(root, f"/sys/module/{name}/refcnt") == refs
        assert sorted(os.listdir(root / f"sys/module/{name}/holders")) == sorted(user_list)


def test_kvm_device_nodes_match_the_modules(root: Path) -> None:
    modules = {row.split()[0] for row in read(root, "/proc/modules").splitlines()}
    has_kvm = "kvm" in modules
    for node in ("dev/kvm", "dev/vhost-net", "dev/net/tun"):
        path = root / node
        assert path.exists() == has_kvm
        if has_kvm:
            assert path.is_file() and not path.is_symlink() and path.stat().st_size == 0
    if "kvm_intel" in modules:
        assert value(root, "/sys/module/kvm_intel/parameters/nested") in ("Y", "N")
        assert " vmx " in read(root, "/proc/cpuinfo")
    if "kvm_amd" in modules:
        assert value(root, "/sys/module/kvm_amd/parameters/nested") in ("0", "1")
        assert " svm " in read(root, "/proc/cpuinfo")


def test_net_devices(root: Path) -> None:
    net = root / "sys/class/net"
    assert os.readlink(net / "lo") == "../../devices/virtual/net/lo"
    for iface in net.iterdir():
        dev = Path(os.path.realpath(iface))
        assert dev.name == iface.name and dev.parent.name == "net"
        assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}\n", (dev / "address").read_text())
        assert (dev / "operstate").read_text() in ("up\n", "down\n", "unknown\n")
        assert int((dev / "mtu").read_text()) >= 68
        assert (dev / "carrier").read_text() in ("0\n", "1\n")
        if (dev / "device").exists():
            pci = dev.parent.parent
            assert os.readlink(dev / "device") == f"../../../{pci.name}"
            assert os.path.realpath(dev / "device") == str(pci)


def test_pci_ids_covers_every_device(root: Path) -> None:
    text = read(root, "/usr/share/misc/pci.ids")
    vendor = None
    known: set[tuple[str, str]] = set()
    for line in text.splitlines():
        if line.startswith("C "):
            break  # the class section follows the vendors
        if not line or line.startswith("#"):
            continue
        if line.startswith("\t\t"):
            assert re.fullmatch(r"\t\t[0-9a-f]{4} [0-9a-f]{4}  \S.*", line), line
        elif line.startswith("\t"):
            assert vendor and re.fullmatch(r"\t[0-9a-f]{4}  \S.*", line), line
            known.add((vendor, line[1:5]))
        else:
            assert re.fullmatch(r"[0-9a-f]{4}  \S.*", line), line
            vendor = line[:4]
    for _, dev in pci_devices(root).items():
        ids = ((dev / "vendor").read_text()[2:6], (dev / "device").read_text()[2:6])
        assert ids in known


def test_cgroup_layout(root: Path) -> None:
    mounts = read(root, "/proc/mounts")
    if " /sys/fs/cgroup cgroup2 " in mounts:
        controllers = value(root, "/sys/fs/cgroup/cgroup.controllers").split()
        assert {"cpuset", "cpu", "memory", "hugetlb"} <= set(controllers)
        assert set(value(root, "/sys/fs/cgroup/cgroup.subtree_control").split()) <= set(controllers)
        assert all(row.split("\t")[1] == "0" for row in read(root, "/proc/cgroups").splitlines()[1:])
    else:
        assert not (root / "sys/fs/cgroup/cgroup.controllers").exists()
        assert (root / "sys/fs/cgroup/memory").is_dir()
    assert read(root, "/proc/cgroups").startswith("#subsys_name\thierarchy\tnum_cgroups\tenabled\n")


def test_thp_and_ksm_formats(root: Path) -> None:
    for name in ("enabled", "defrag"):
        text = value(root, f"/sys/kernel/mm/transparent_hugepage/{name}")
        assert len(re.findall(r"\[[a-z+]+\]", text)) == 1
    ksm = root / "sys/kernel/mm/ksm"
    for name in ("run", "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "full_scans",
                 "pages_to_scan", "sleep_millisecs", "merge_across_nodes", "use_zero_pages", "max_page_sharing",
                 "stable_node_chains", "stable_node_dups"):
        assert re.fullmatch(r"\d+\n", (ksm / name).read_text()), name


def test_writable_stand_ins(root: Path) -> None:
    assert (root / "proc/sys/vm/compact_memory").stat().st_size == 0
    assert (root / "proc/sys/vm/compact_memory").stat().st_mode & 0o200
    assert (root / "sys/bus/pci/drivers_probe").exists()


# ----------------------------------------------------------------------------- build behaviour


def test_rebuild_is_idempotent(tmp_path: Path) -> None:
    first = tree_digest(hostgen.build_host("amd-nps4-consumer", tmp_path / "h"))
    second = tree_digest(hostgen.build_host("amd-nps4-consumer", tmp_path / "h"))
    assert first == second


def test_refuses_to_wipe_a_directory_it_did_not_build(tmp_path: Path) -> None:
    (tmp_path / "precious").write_text("keep me")
    with pytest.raises(hostgen.SpecError):
        hostgen.build_host("minimal", tmp_path)
    assert (tmp_path / "precious").read_text() == "keep me"


def test_largest_host_stays_a_bounded_tree(tmp_path: Path) -> None:
    """Size, not time (no timed assertions in tests): the 224-CPU host is ~10 000 entries."""
    root = hostgen.build_host("intel-2s-8gpu", tmp_path / "h")
    entries = sum(len(files) + len(dirs) for _, dirs, files in os.walk(root))
    assert 5_000 < entries < 20_000


def test_cli_builds_a_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hostgen.main(["minimal", str(tmp_path / "m")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m")
    assert (tmp_path / "m/proc/cpuinfo").is_file()
    assert hostgen.main(["no-such-host", str(tmp_path / "x")]) == 2


def test_offline_cpus_leave_cpuinfo_and_topology(tmp_path: Path) -> None:
    _, spec = hostgen.load_spec("rt-isolated")
    spec["cpu"] = {**spec["cpu"], "offline": "12-23"}  # SMT siblings taken offline
    root = hostgen.build_host(spec, tmp_path / "h")
    assert value(root, "/sys/devices/system/cpu/online") == "0-11"
    assert value(root, "/sys/devices/system/cpu/offline") == "12-23"
    assert value(root, "/sys/devices/system/cpu/cpu12/online") == "0"
    assert value(root, "/sys/devices/system/cpu/smt/active") == "0"
    assert read(root, "/proc/cpuinfo").count("processor\t:") == 12


def test_inconsistent_specs_are_refused(tmp_path: Path) -> None:
    _, spec = hostgen.load_spec("minimal")
    spec["memory"] = {**spec["memory"], "hugepages": {"2M": {"nr": [4], "free": [5]}}}
    with pytest.raises(hostgen.SpecError, match="free"):
        hostgen.build_host(spec, tmp_path / "a")
    _, spec = hostgen.load_spec("minimal")
    spec["memory"] = {**spec["memory"], "hugepages": {"2M": {"nr": [1, 2]}}}
    with pytest.raises(hostgen.SpecError, match="NUMA nodes"):
        hostgen.build_host(spec, tmp_path / "b")


# ----------------------------------------------------------------------------- value formats


def test_kernel_relative_link_rule() -> None:
    rel = hostgen.kernel_relative_link
    gpu = "/sys/devices/pci0000:16/0000:16:02.0/0000:17:00.0"
    assert rel("/sys/bus/pci/devices/0000:17:00.0", gpu) == "../../../devices/pci0000:16/0000:16:02.0/0000:17:00.0"
    assert rel(f"{gpu}/driver", "/sys/bus/pci/drivers/nvidia") == "../../../../bus/pci/drivers/nvidia"
    assert rel(f"{gpu}/iommu_group", "/sys/kernel/iommu_groups/27") == "../../../../kernel/iommu_groups/27"
    assert rel("/sys/kernel/iommu_groups/27/devices/0000:17:00.0", gpu) == (
        "../../../../devices/pci0000:16/0000:16:02.0/0000:17:00.0")
    nic = "/sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0"
    assert rel(f"{nic}/net/eth0/device", nic) == "../../../0000:3b:00.0"
    assert rel("/sys/class/net/eth0", f"{nic}/net/eth0") == (
        "../../devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/net/eth0")
    assert rel(f"{nic}/virtfn0", "/sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:02.0") == "../0000:3b:02.0"
    assert rel("/sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:02.0/physfn", nic) == "../0000:3b:00.0"
    assert rel("/sys/devices/system/cpu/cpu0/cpufreq", "/sys/devices/system/cpu/cpufreq/policy0") == (
        "../cpufreq/policy0")


def test_cpu_formats() -> None:
    assert hostgen.format_cpulist([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"
    assert hostgen.format_cpulist([]) == ""
    assert hostgen.parse_cpulist("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert hostgen.format_cpumask([0, 1], 2) == "3"
    assert hostgen.format_cpumask(range(16), 16) == "ffff"
    assert hostgen.format_cpumask([0], 40) == "00,00000001"
    assert hostgen.format_cpumask(range(56, 112), 224) == (
        "00000000,00000000,00000000,0000ffff,ffffffff,ff000000,00000000")


# ----------------------------------------------------------------------------- the hosts in the brief


def gpus(root: Path) -> dict[str, Path]:
    return {a: d for a, d in pci_devices(root).items() if (d / "class").read_text().startswith("0x03")}


def driver(dev: Path) -> str | None:
    return os.path.basename(os.path.realpath(dev / "driver")) if (dev / "driver").exists() else None


def group_of(dev: Path) -> str:
    return os.path.basename(os.path.realpath(dev / "iommu_group"))


def test_intel_hgx_host(trees: dict[str, Path]) -> None:
    root = trees["intel-2s-8gpu"]
    found = gpus(root)
    h100 = sorted(a for a, d in found.items() if (d / "device").read_text() == "0x2330\n")
    assert len(h100) == 8
    assert [int((found[a] / "numa_node").read_text()) for a in h100] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [driver(found[a]) for a in h100] == ["vfio-pci"] * 4 + ["nvidia"] * 4
    assert len({group_of(found[a]) for a in h100}) == 8
    for a in h100:
        assert os.listdir(root / f"sys/bus/pci/devices/{a}/iommu_group/devices") == [a]
        assert (found[a] / "class").read_text() == "0x030200\n" and not (found[a] / "boot_vga").exists()
    degraded = [a for a in h100 if (found[a] / "current_link_width").read_text() != (
        found[a] / "max_link_width").read_text()]
    assert degraded == ["0000:cb:00.0"]
    assert value(root, "/sys/bus/pci/devices/0000:cb:00.0/current_link_speed") == "16.0 GT/s PCIe"
    assert value(root, "/sys/bus/pci/devices/0000:cb:00.0/max_link_speed") == "32.0 GT/s PCIe"
    aer = [a for a in h100 if not (found[a] / "aer_dev_correctable").read_text().endswith("TOTAL_ERR_COR 0\n")]
    assert aer == ["0000:9b:00.0"]
    switches = [d for d in pci_devices(root).values() if (d / "device").read_text() == "0x22a3\n"]
    assert len(switches) == 4 and all(driver(d) == "nvidia" for d in switches)
    assert (found["0000:02:00.0"] / "boot_vga").read_text() == "1\n" and driver(found["0000:02:00.0"]) == "ast"
    assert sorted(p.name for p in (root / "dev").glob("nvidia[0-9]*")) == [f"nvidia{i}" for i in range(4)]
    assert (root / "sys/firmware/acpi/tables/DMAR").exists() and not (root / "sys/kernel/realtime").exists()
    assert value(root, "/sys/module/kvm_intel/parameters/nested") == "Y"
    assert value(root, "/sys/kernel/mm/ksm/run") == "0"
    cx7 = root / "sys/bus/pci/devices/0000:3b:00.0"
    assert value(root, "/sys/bus/pci/devices/0000:3b:00.0/sriov_numvfs") == "4"
    assert [driver(Path(os.path.realpath(cx7 / f"virtfn{i}"))) for i in range(4)] == ["mlx5_core"] * 4
    assert value(root, "/sys/devices/system/cpu/cpu0/topology/thread_siblings_list") == "0,112"
    assert value(root, "/sys/devices/system/cpu/cpu56/topology/physical_package_id") == "1"
    assert value(root, "/sys/devices/system/node/node0/cpulist") == "0-55,112-167"
    assert value(root, "/sys/devices/system/cpu/cpufreq/policy0/scaling_governor") == "performance"
    assert "cpuManagerPolicy: static" in read(root, "/var/lib/kubelet/config.yaml")


def test_amd_consumer_host(trees: dict[str, Path]) -> None:
    root = trees["amd-nps4-consumer"]
    dev = pci_devices(root)
    assert group_of(dev["0000:41:00.0"]) == group_of(dev["0000:41:00.1"])
    members = sorted(os.listdir(root / f"sys/kernel/iommu_groups/{group_of(dev['0000:41:00.0'])}/devices"))
    assert members == ["0000:41:00.0", "0000:41:00.1"]
    assert {driver(dev[a]) for a in members} == {"vfio-pci"}
    radeon = sorted(os.listdir(root / f"sys/kernel/iommu_groups/{group_of(dev['0000:83:00.0'])}/devices"))
    assert "0000:84:00.0" in radeon and "0000:83:00.1" in radeon
    assert value(root, "/sys/bus/pci/devices/0000:84:00.0/class") == "0x0c0330"
    assert driver(dev["0000:83:00.0"]) == "amdgpu" and driver(dev["0000:83:00.1"]) == "snd_hda_intel"
    assert value(root, "/sys/bus/pci/devices/0000:83:00.0/boot_vga") == "1"
    assert value(root, "/sys/bus/pci/devices/0000:41:00.0/boot_vga") == "0"
    assert value(root, "/sys/module/kvm_amd/parameters/nested") == "1"
    assert int(value(root, "/sys/kernel/mm/ksm/pages_sharing")) > 0 and value(root, "/sys/kernel/mm/ksm/run") == "1"
    assert value(root, "/sys/devices/system/node/node0/distance") == "10 12 12 12"
    governors = {value(root, f"/sys/devices/system/cpu/cpufreq/policy{c}/scaling_governor") for c in range(128)}
    assert governors == {"performance", "schedutil"}
    assert (root / "sys/firmware/acpi/tables/IVRS").exists() and not (root / "var/lib/kubelet").exists()
    assert value(root, "/sys/bus/pci/devices/0000:c1:00.0/sriov_numvfs") == "0"
    assert " tsc_deadline_timer " not in read(root, "/proc/cpuinfo")


def test_rt_host(trees: dict[str, Path]) -> None:
    root = trees["rt-isolated"]
    assert value(root, "/sys/kernel/realtime") == "1"
    assert "PREEMPT_RT" in read(root, "/proc/version") and "-rt" in value(root, "/proc/sys/kernel/osrelease")
    isolated = value(root, "/sys/devices/system/cpu/isolated")
    assert isolated == value(root, "/sys/devices/system/cpu/nohz_full") == "2-11,14-23"
    assert f"rcu_nocbs={isolated}" in read(root, "/proc/cmdline")
    assert value(root, "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages") == "16"
    assert value(root, "/proc/sys/kernel/numa_balancing") == "0"
    assert sorted(p.name for p in (root / "sys/devices/system/node").glob("node*")) == ["node0"]
    kubelet = read(root, "/var/lib/kubelet/config.yaml")
    assert "reservedSystemCPUs: 0-1,12-13" in kubelet and "memoryManagerPolicy: Static" in kubelet
    assert not gpus(root)
    assert os.readlink(root / "sys/bus/pci/devices/0000:17:00.0") == (
        "../../../devices/pci0000:16/0000:16:02.0/0000:17:00.0")
    assert os.readlink(root / "sys/bus/pci/devices/0000:17:00.0/driver") == "../../../../bus/pci/drivers/ice"


def test_desktop_host(trees: dict[str, Path]) -> None:
    root = trees["desktop-no-iommu"]
    cpuinfo = read(root, "/proc/cpuinfo")
    assert " vmx " not in cpuinfo and " svm " not in cpuinfo
    assert not (root / "dev/kvm").exists() and not (root / "sys/module/kvm").exists()
    assert not os.listdir(root / "sys/kernel/iommu_groups") and not (root / "sys/firmware/acpi/tables/DMAR").exists()
    assert not (root / "sys/devices/system/cpu/cpufreq").exists()
    assert meminfo(read(root, "/proc/meminfo"))["SwapTotal"] > 0
    assert value(root, "/sys/kernel/mm/transparent_hugepage/enabled") == "[always] madvise never"
    assert sorted(p.name for p in (root / "sys/devices/system/node").glob("node*")) == ["node0"]
    vga = gpus(root)
    assert len(vga) == 1
    (dev,) = vga.values()
    assert (dev / "boot_vga").read_text() == "1\n" and driver(dev) == "nouveau"


def test_minimal_host(trees: dict[str, Path]) -> None:
    root = trees["minimal"]
    assert value(root, "/sys/devices/system/cpu/online") == "0-1"
    assert value(root, "/sys/devices/system/node/online") == "0"
    assert not pci_devices(root)
    assert read(root, "/proc/modules") == ""
