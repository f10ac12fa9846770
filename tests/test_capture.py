"""``capture`` round trip: the packed tree reproduces the inventory taken while packing it."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from nodeagent.capture import LIVE_ONLY_FIELDS, extract, is_secret, unpacked_root, write_capture
from nodeagent.cli import main
from nodeagent.discover import discover
from nodeagent.host import Host


def _masked(data: dict) -> dict:
    for dotted in LIVE_ONLY_FIELDS:
        *parents, leaf = dotted.split(".")
        target = data
        for part in parents:
            target = target[part]
        target.pop(leaf, None)
    return data


def _round_trip(host: Host, tmp_path: Path) -> tuple[dict, dict, list[tarfile.TarInfo]]:
    archive_path = tmp_path / "capture.tar.gz"
    summary = write_capture(host, str(archive_path))
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with tarfile.open(archive_path) as archive:
        extract(archive, str(unpacked))
    assert [p.name for p in unpacked.iterdir()] == ["capture"]  # one top-level directory: the file's name
    again = discover(Host(unpacked_root(str(unpacked))))
    with tarfile.open(archive_path) as archive:
        members = [m for m in archive.getmembers() if m.name != "capture"]
    for member in members:
        assert member.name.startswith("capture/")
        member.name = member.name.removeprefix("capture/")
    return _masked(summary.inventory.to_dict()), _masked(again.to_dict()), members


@pytest.mark.realhost
def test_capture_of_this_host_reproduces_its_inventory(tmp_path: Path) -> None:
    captured, replayed, members = _round_trip(Host("/"), tmp_path)
    assert replayed == captured
    assert not [m.name for m in members if is_secret("/" + m.name)], "a /proc/<pid> or credential was packed"
    links = [m for m in members if m.issym()]
    assert links and all(not m.linkname.startswith("/") for m in links if m.name.startswith("sys/"))


@pytest.mark.parametrize("name", ["intel-2s-8gpu", "amd-nps4-consumer", "rt-isolated", "desktop-no-iommu",
                                  "a100-vgpu", "h100-vgpu-sriov"])
def test_capture_of_a_fixture_host_round_trips(name: str, host_trees, tmp_path: Path) -> None:
    captured, replayed, _ = _round_trip(Host(str(host_trees(name))), tmp_path)
    assert replayed == captured
    assert captured["gpus"] == replayed["gpus"]
    assert captured["vgpu"] == replayed["vgpu"]  # mdev parents, instances (found through links), vGPU VFs


def test_secret_paths_are_recognised() -> None:
    assert is_secret("/proc/1234/environ")
    assert is_secret("/proc/self/cmdline")
    assert is_secret("/var/lib/kubelet/pki/kubelet.key")
    assert is_secret("/etc/kubernetes/kubelet.conf")
    assert not is_secret("/proc/cpuinfo")
    assert not is_secret("/sys/kernel/mm/ksm/run")


def test_capture_command_writes_the_archive(host_trees, tmp_path: Path) -> None:
    out = tmp_path / "c.tar.gz"
    result = CliRunner().invoke(main, ["--root", str(host_trees("minimal")), "capture", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    with tarfile.open(out) as archive:
        assert "c/NODEAGENT-CAPTURE.json" in archive.getnames()


# --- credentials inside packed files (issue 12 item 5) ------------------------------------------

_SECRET_CMDLINE = ('BOOT_IMAGE=/vmlinuz root=UUID=1 ro rd.iscsi.password=hunter2 isolcpus=2-3 '
                   'ipa.TOKEN="abc def" my_secret=s3 quiet intel_iommu=on\n')
_KUBELET_CONFIG = """\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cpuManagerPolicy: static
reservedSystemCPUs: "0-1"
topologyManagerPolicy: single-numa-node
authentication:
  webhook:
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
staticPodURLHeader:
  Authorization: ["Bearer s3cr3t-static"]
bootstrapToken: tok-123
"""


def _tree_with_secrets(host_trees, tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "host"
    shutil.copytree(host_trees("minimal"), root, symlinks=True)
    (root / "proc" / "cmdline").write_text(_SECRET_CMDLINE)
    config = root / "var" / "lib" / "kubelet" / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(_KUBELET_CONFIG)
    return root


def test_capture_redacts_boot_argument_and_kubelet_credentials(host_trees, tmp_path: Path) -> None:
    import json

    root = _tree_with_secrets(host_trees, tmp_path)
    summary = write_capture(Host(str(root)), str(tmp_path / "c.tar.gz"))
    with tarfile.open(tmp_path / "c.tar.gz") as archive:
        packed = {m.name.removeprefix("c/"): archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}
    everything = b"\n".join(packed.values())
    for secret in (b"hunter2", b"abc def", b"s3", b"s3cr3t-static", b"tok-123"):
        assert not any(secret in data for name, data in packed.items() if name != "NODEAGENT-CAPTURE.json"), secret
    assert b"hunter2" not in everything
    cmdline = packed["proc/cmdline"].decode()
    assert "rd.iscsi.password=<redacted>" in cmdline and 'ipa.TOKEN="<redacted>"' in cmdline
    assert "isolcpus=2-3" in cmdline and "intel_iommu=on" in cmdline  # the facts discovery needs stay
    manifest = json.loads(packed["NODEAGENT-CAPTURE.json"])
    redacted = {r["path"]: r["names"] for r in manifest["redacted"]}
    assert redacted["/proc/cmdline"] == ["rd.iscsi.password", "ipa.TOKEN", "my_secret"]
    assert redacted["/var/lib/kubelet/config.yaml"] == ["authentication", "authorization", "staticPodURLHeader",
                                                        "bootstrapToken"]
    assert summary.redacted == {k: v for k, v in redacted.items()}
    # Every fact discovery takes from these files is the same on the unpacked capture.
    unpacked = tmp_path / "unpacked"
    with tarfile.open(tmp_path / "c.tar.gz") as archive:
        extract(archive, str(unpacked))
    again = discover(Host(unpacked_root(str(unpacked)))).to_dict()
    live = summary.inventory.to_dict()
    assert again["kubelet"] == live["kubelet"]
    assert again["cpu"] == live["cpu"] and again["iommu"] == live["iommu"]
    assert "hunter2" not in again["kernel"]["cmdline"]


def test_capture_command_says_what_it_redacted(host_trees, tmp_path: Path) -> None:
    root = _tree_with_secrets(host_trees, tmp_path)
    out = tmp_path / "c.tar.gz"
    result = CliRunner().invoke(main, ["--root", str(root), "capture", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "redacted in /proc/cmdline: rd.iscsi.password, ipa.TOKEN, my_secret" in result.output


@pytest.mark.parametrize(("line", "kept", "gone"), [
    ("a=1 password=x b=2", ["a=1", "password=<redacted>", "b=2"], ["=x "]),
    ('root=/dev/sda x.passwd="p w" y', ["root=/dev/sda", 'x.passwd="<redacted>"', " y"], ["p w"]),
    ("apikey=K api_key=K2 secretive no_token_here=v", ["apikey=<redacted>", "secretive"], ["K", "=v"]),
    ("tokenless", ["tokenless"], []),  # a bare flag has no value to hide
])
def test_boot_argument_redaction(line: str, kept: list[str], gone: list[str]) -> None:
    from nodeagent.redact import redact_cmdline

    text, _ = redact_cmdline(line)
    for part in kept:
        assert part in text
    for part in gone:
        assert part not in text


def test_garbled_kubelet_config_is_redacted_line_by_line() -> None:
    from nodeagent.redact import redact_kubelet_config

    text, names = redact_kubelet_config("cpuManagerPolicy: static\n  bad: [\nbootstrapToken: t0k\n")
    assert "t0k" not in text and "cpuManagerPolicy: static" in text
    assert names == ["bootstrapToken"]


def test_capture_redacts_the_k3s_join_token_and_keeps_the_kubelet_flags(host_trees, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "host"
    shutil.copytree(host_trees("minimal"), root, symlinks=True)
    config = root / "etc" / "rancher" / "k3s" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text('token: "K10secretjoin::server:abc"\nkubelet-arg:\n  - "cpu-manager-policy=static"\n'
                      '  - "bootstrap-token=tok9"\n')
    summary = write_capture(Host(str(root)), str(tmp_path / "c.tar.gz"))
    assert summary.inventory.kubelet.flavour == "k3s"
    with tarfile.open(tmp_path / "c.tar.gz") as archive:
        packed = archive.extractfile("c/etc/rancher/k3s/config.yaml").read()
        extract(archive, str(tmp_path / "unpacked"))
    assert b"K10secretjoin" not in packed and b"tok9" not in packed
    assert summary.redacted["/etc/rancher/k3s/config.yaml"] == ["token", "kubelet-arg[1]: bootstrap-token"]
    again = discover(Host(unpacked_root(str(tmp_path / "unpacked"))))
    assert again.kubelet.cpu_manager_policy == "static" == summary.inventory.kubelet.cpu_manager_policy


@pytest.mark.parametrize("has_filter", [True, False], ids=["tar-filter", "python-3.11.2"])
def test_extract_unpacks_a_capture_and_refuses_escapes(has_filter: bool, host_trees, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian 12's Python (3.11.2) has no extraction filters: the checks by hand refuse the same."""
    import io

    from nodeagent.capture import CaptureArchiveError

    if not has_filter:
        monkeypatch.delattr(tarfile, "tar_filter", raising=False)
    write_capture(Host(str(host_trees("minimal"))), str(tmp_path / "m.tar.gz"))
    with tarfile.open(tmp_path / "m.tar.gz") as archive:
        extract(archive, str(tmp_path / "ok"))
    assert discover(Host(unpacked_root(str(tmp_path / "ok")))).numa
    outside = tmp_path / "outside"
    outside.mkdir()
    hostile = {"dotdot": [("../evil", tarfile.REGTYPE, "")],
               "through-a-link": [("m/sys", tarfile.SYMTYPE, str(outside)), ("m/sys/planted", tarfile.REGTYPE, "")]}
    for label, members in hostile.items():
        bad = tmp_path / f"{label}.tar"
        with tarfile.open(bad, "w") as archive:
            for name, kind, link in members:
                info = tarfile.TarInfo(name)
                info.type, info.linkname = kind, link
                archive.addfile(info, io.BytesIO(b""))
        with tarfile.open(bad) as archive, pytest.raises((CaptureArchiveError, tarfile.TarError)):
            extract(archive, str(tmp_path / label))
    assert not (tmp_path / "evil").exists() and list(outside.iterdir()) == []
