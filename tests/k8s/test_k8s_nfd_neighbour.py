"""``--nfd-labels=auto``: where NFD runs, nodeagent leaves NFD's own keys to it (the real kube-apiserver of
tests/k8s/control-plane behind the fault proxy, the agent as its own ServiceAccount through the real kubernetes
client; NFD's NodeFeature CRD, a minimal one in tests/k8s/fixtures/nfd/, installed where a test needs it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nodeagent.k8s import desired_state, publish_once
from nodeagent.labels import NFD_FEATURE_LABELS_ANNOTATION, label_config_for, nfd_owned_keys, parse_owned
from tests.k8s.cluster import ApiServer
from tests.k8s.conftest import NODE
from tests.support.factories import gpu_node_inventory

pytestmark = pytest.mark.k8s

NFD = "feature.node.kubernetes.io"
AUTO = label_config_for("auto")


@pytest.fixture
def nfd_crd(apiserver: ApiServer) -> Iterator[None]:
    """NFD's NodeFeature CRD installed (Established, serving) for one test, then removed with its objects."""
    apiserver.plane.install_nfd_crd()
    yield
    apiserver.plane.remove_nfd_crd()


def published(apiserver: ApiServer) -> tuple[dict[str, str], set[str]]:
    meta = apiserver.node(NODE)["metadata"]
    return meta["labels"], parse_owned(meta["annotations"].get("nodeagent.io/owned-labels"))


def test_node_with_nfds_annotation_gets_no_nfd_owned_keys(apiserver: ApiServer, kube_api: Any) -> None:
    nfd_labels = {f"{NFD}/cpu-cpuid.AVX2": "true", f"{NFD}/cpu-hardware_multithreading": "true",
                  f"{NFD}/memory-numa": "true", f"{NFD}/kernel-version.major": "6"}
    listed = "cpu-cpuid.AVX2,cpu-hardware_multithreading,memory-numa,kernel-version.major"
    apiserver.add_node(NODE, labels={"kubernetes.io/hostname": NODE, **nfd_labels},
                       annotations={NFD_FEATURE_LABELS_ANNOTATION: listed})
    inv = gpu_node_inventory()
    want = desired_state(inv, node_name=NODE, label_config=AUTO, topology=False)
    assert f"{NFD}/cpu-cpuid.AVX2" in want.labels  # computed; the publisher leaves it to NFD
    publish_once(kube_api, NODE, want)
    labels, owned = published(apiserver)
    assert not owned & nfd_owned_keys()  # nodeagent claims none of NFD's keys
    assert {k: labels[k] for k in nfd_labels} == nfd_labels  # NFD's values untouched
    assert labels[f"{NFD}/numa"] == "true" and f"{NFD}/numa" in owned  # the recipe-compatible set stays
    assert labels["nodeagent.io/numa"] == "true"


def test_keys_nodeagent_wrote_before_nfd_came_are_handed_over_or_removed(apiserver: ApiServer,
                                                                        kube_api: Any) -> None:
    apiserver.add_node(NODE)
    inv = gpu_node_inventory()
    publish_once(kube_api, NODE, desired_state(inv, node_name=NODE, label_config=AUTO, topology=False))
    labels, owned = published(apiserver)
    mine = owned & nfd_owned_keys()
    assert f"{NFD}/cpu-hardware_multithreading" in mine  # no NFD yet: auto publishes NFD's keys

    # NFD arrives and lists only some of them (say it publishes no cpu-hardware_multithreading here).
    kept = sorted(mine - {f"{NFD}/cpu-hardware_multithreading"})
    patch = {"metadata": {"annotations": {NFD_FEATURE_LABELS_ANNOTATION: ",".join(k.split("/", 1)[1] for k in kept)}}}
    apiserver.admin.patch(f"/api/v1/nodes/{NODE}", patch)  # nfd-master's write, not the agent's
    publish_once(kube_api, NODE, desired_state(inv, node_name=NODE, label_config=AUTO, topology=False))
    labels, owned = published(apiserver)
    assert not owned & nfd_owned_keys()
    assert all(k in labels for k in kept)  # NFD's now: left in place, not removed
    assert f"{NFD}/cpu-hardware_multithreading" not in labels  # ours alone: removed
    mark = apiserver.mark()
    publish_once(kube_api, NODE, desired_state(inv, node_name=NODE, label_config=AUTO, topology=False))
    assert apiserver.count(writes=True, since=mark) == 0


@pytest.mark.usefixtures("nfd_crd")
def test_nodefeature_objects_alone_show_nfd_runs(apiserver: ApiServer, kube_api: Any) -> None:
    apiserver.add_node(NODE)
    apiserver.add_node_feature("other-node")
    publish_once(kube_api, NODE, desired_state(gpu_node_inventory(), node_name=NODE, label_config=AUTO,
                                               topology=False))
    _, owned = published(apiserver)
    assert owned & nfd_owned_keys()  # another node's NodeFeature says nothing about this one

    apiserver.add_node_feature(NODE)
    from nodeagent.k8s.publisher import Publisher

    publisher = Publisher(kube_api, NODE)
    publisher.publish(desired_state(gpu_node_inventory(), node_name=NODE, label_config=AUTO, topology=False))
    labels, owned = published(apiserver)
    assert not owned & nfd_owned_keys()
    assert f"{NFD}/cpu-hardware_multithreading" in labels  # handed over as it was, for NFD to keep


@pytest.mark.parametrize("mode", ["on", "off"])
def test_forced_modes_ignore_nfds_presence(apiserver: ApiServer, kube_api: Any, mode: str) -> None:
    apiserver.add_node(NODE, annotations={NFD_FEATURE_LABELS_ANNOTATION: "cpu-cpuid.AVX2"})
    config = label_config_for(mode)
    publish_once(kube_api, NODE, desired_state(gpu_node_inventory(), node_name=NODE, label_config=config,
                                               topology=False))
    _, owned = published(apiserver)
    assert bool(owned & nfd_owned_keys()) == (mode == "on")
    assert apiserver.count(resource="nodefeatures") == 0  # forced: no lookup


@pytest.mark.parametrize(("args", "env", "cpuid"), [
    ([], {}, True), (["--nfd-labels"], {}, True), (["--nfd-labels=off"], {}, False), (["--no-nfd-labels"], {}, False),
    ([], {"NODEAGENT_NFD_LABELS": "false"}, False), ([], {"NODEAGENT_NFD_LABELS": "auto"}, True),
])
def test_cli_nfd_modes(host_trees: Any, args: list[str], env: dict[str, str], cpuid: bool) -> None:
    import json

    from click.testing import CliRunner

    from nodeagent.cli import main

    root = str(host_trees("intel-2s-8gpu"))
    result = CliRunner().invoke(main, ["--root", root, "labels", "-o", "json", *args], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    labels = data.get("labels", data)
    assert any("cpu-cpuid.AVX2" in k for k in labels) == cpuid


def test_cli_refuses_an_unknown_nfd_mode(host_trees: Any) -> None:
    from click.testing import CliRunner

    from nodeagent.cli import main

    result = CliRunner().invoke(main, ["--root", str(host_trees("minimal")), "labels", "--nfd-labels=maybe"])
    assert result.exit_code == 2 and "'maybe' is not one of auto, on, off" in result.output
