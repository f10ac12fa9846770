"""daemonset/Dockerfile built for real, with buildah (no registry and no Docker engine needed): the
base is Debian 12 made by debootstrap from the Debian mirror (the Dockerfile's pinned base lives on a
registry this machine cannot reach), then the image runs `nodeagent --version` and `inspect --root`
on a fixture host, which must equal the inventory this checkout computes.

Both images are cached in buildah's storage: the base once per machine, the nodeagent image once per
content of what the Dockerfile copies (a changed package rebuilds it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "localhost/nodeagent-test-base:bookworm"
IMAGE = "localhost/nodeagent:test-{digest}"
BUILDAH = shutil.which("buildah")
DEBOOTSTRAP = shutil.which("debootstrap")
MIRROR = "http://deb.debian.org/debian"

# Building the base and the image takes minutes (longer than the suite's 300 s default) the first time.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600),
              pytest.mark.skipif(BUILDAH is None or DEBOOTSTRAP is None, reason="buildah or debootstrap is missing")]


def _buildah(*args: str, timeout: int = 1800) -> str:
    done = subprocess.run([str(BUILDAH), *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"buildah {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout.strip()


def _exists(image: str) -> bool:
    return subprocess.run([str(BUILDAH), "inspect", "--type", "image", image], capture_output=True,
                          check=False).returncode == 0


def _inputs_digest() -> str:
    """What the Dockerfile copies, and the Dockerfile itself."""
    files = [REPO / "daemonset" / "Dockerfile", REPO / "daemonset" / "constraints.txt", REPO / "pyproject.toml",
             REPO / "README.md", *sorted(p for p in (REPO / "nodeagent").rglob("*")
                                         if p.is_file() and "__pycache__" not in p.parts)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not _exists(BASE_IMAGE):
        rootfs = tmp_path_factory.mktemp("bookworm")
        done = subprocess.run([str(DEBOOTSTRAP), "--variant=minbase", "bookworm", str(rootfs), MIRROR],
                              capture_output=True, text=True, timeout=1800, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        container = _buildah("from", "scratch")
        try:
            mount = Path(_buildah("mount", container))
            subprocess.run(["cp", "-a", f"{rootfs}/.", str(mount)], check=True)
            _buildah("umount", container)
            _buildah("commit", "-q", container, BASE_IMAGE)
        finally:
            subprocess.run([str(BUILDAH), "rm", container], capture_output=True, check=False)
    return BASE_IMAGE


@pytest.fixture(scope="session")
def image(base_image: str) -> str:
    tag = IMAGE.format(digest=_inputs_digest())
    if not _exists(tag):
        args = ["bud", "--isolation", "chroot", "--network", "host", "-f", str(REPO / "daemonset" / "Dockerfile"),
                "--build-arg", f"BASE={base_image}", "-t", tag]
        # The CA bundle this machine's pip trusts (a TLS-intercepting proxy's), for pip in the build.
        ca = os.environ.get("PIP_CERT") or os.environ.get("REQUESTS_CA_BUNDLE")
        if ca and Path(ca).is_file():
            args += ["--volume", f"{ca}:/run/host-ca.pem:ro", "--build-arg", "PIP_CERT=/run/host-ca.pem"]
        if os.environ.get("PIP_INDEX_URL"):
            args += ["--build-arg", f"PIP_INDEX_URL={os.environ['PIP_INDEX_URL']}"]
        _buildah(*args, str(REPO), timeout=3600)
    return tag


def _run(image: str, *argv: str, volume: str | None = None) -> subprocess.CompletedProcess[str]:
    container = _buildah("from", image)
    try:
        args = ["run", "--isolation", "chroot"]
        if volume:
            args += ["-v", volume]
        return subprocess.run([str(BUILDAH), *args, container, "--", *argv], capture_output=True, text=True,
                              timeout=600, check=False)
    finally:
        subprocess.run([str(BUILDAH), "rm", container], capture_output=True, check=False)


def test_the_image_runs_nodeagent(image: str) -> None:
    from nodeagent import __version__

    done = _run(image, "nodeagent", "--version")
    assert done.returncode == 0, done.stderr
    assert __version__ in done.stdout
    config = json.loads(_buildah("inspect", "--type", "image", image))
    assert config["OCIv1"]["config"]["Entrypoint"] == ["nodeagent"]
    assert config["OCIv1"]["config"]["Cmd"] == ["serve"]
    clients = _run(image, "/opt/nodeagent/bin/python", "-c", "import libvirt, pynvml, kubernetes; print('ok')")
    assert clients.stdout.strip() == "ok", clients.stderr  # the optional clients are in the image


def test_the_image_inspects_a_fixture_host_like_the_checkout(image: str, fresh_host_tree) -> None:
    from nodeagent.discover import discover
    from nodeagent.host import Host

    # a private copy, mounted read-write: on a read-only mount /dev/kvm would (rightly) read as not writable
    tree = fresh_host_tree("intel-2s-8gpu")
    done = _run(image, "nodeagent", "--root", "/fixture", "inspect", "-o", "json", volume=f"{tree}:/fixture:rw")
    assert done.returncode == 0, done.stderr
    inside = json.loads(done.stdout)
    here = json.loads(json.dumps(discover(Host(str(tree))).to_dict()))
    for key in ("cpu", "numa", "gpus", "iommu", "kvm", "ksm", "kernel"):
        assert inside[key] == here[key], key
