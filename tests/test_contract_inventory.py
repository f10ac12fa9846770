"""CONTRACT §2: the inventory keys users script against, with their types, on every fixture host."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from nodeagent.cli import main

# key → accepted JSON types (None for null)
CONTRACT = {
    "cpu": {
        "vendor": (str,), "model_name": (str,), "sockets": (int,), "cores_per_socket": (int,),
        "threads_per_core": (int,), "logical_cpus": (int,), "flags": (list,),
        "virtualization": (str, type(None)), "isolated": (list,), "nohz_full": (list,),
        "governor": (str, type(None)),
    },
    "numa[]": {"id": (int,), "cpus": (list,), "memory_total_bytes": (int,), "distances": (list,), "hugepages": (dict,)},
    "gpus[]": {
        "address": (str,), "vendor_id": (str,), "device_id": (str,), "name": (str,), "driver": (str, type(None)),
        "iommu_group": (int, type(None)), "numa_node": (int, type(None)), "boot_vga": (bool,),
        "group_devices": (list,), "passthrough_ready": (bool,),
    },
    "kvm": {"available": (bool,), "api_version": (int, type(None)), "module": (str, type(None)),
            "nested": (bool, type(None))},
    "iommu": {"enabled": (bool,), "groups": (int,)},
    "ksm": {"run": (int,), "pages_shared": (int,), "pages_sharing": (int,)},
    "kernel": {"release": (str,), "realtime": (bool,), "cmdline": (str,)},
}


@pytest.mark.parametrize("host", ["intel-2s-8gpu", "amd-nps4-consumer", "rt-isolated", "desktop-no-iommu",
                                  "h200-firecracker"])
def test_inspect_json_has_the_contract_keys(host: str, host_trees) -> None:
    result = CliRunner().invoke(main, ["--root", str(host_trees(host)), "inspect", "-o", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for section, keys in CONTRACT.items():
        items = data[section.removesuffix("[]")]
        for item in items if section.endswith("[]") else [items]:
            for key, types in keys.items():
                assert key in item, f"{section}.{key} missing on {host}"
                assert isinstance(item[key], types), f"{section}.{key} = {item[key]!r} on {host}"
    for node in data["numa"]:
        for size, pool in node["hugepages"].items():
            assert size in ("2Mi", "1Gi") and {"total", "free"} <= set(pool)
    for gpu in data["gpus"]:
        assert len(gpu["vendor_id"]) == 4 and len(gpu["device_id"]) == 4
        assert gpu["address"].count(":") == 2 and "." in gpu["address"]
    assert data["cpu"]["virtualization"] in ("vmx", "svm", None)
