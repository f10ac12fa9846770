"""A real ``helm``, built once from the Go module proxy at a pinned version into
``~/.cache/nodeagent-k8s/helm-<version>/helm`` (``NODEAGENT_K8S_CACHE`` overrides the cache root).

    python3 -m tests.install.helm      build it if needed and print its path

A fresh machine builds it on first use (several minutes; one build at a time, others wait on a
lock in the cache directory).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

HELM_VERSION = "v3.20.2"
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
BUILD_TIMEOUT_S = 3600


class HelmBuildError(RuntimeError):
    pass


def cache_dir() -> Path:
    root = Path(os.environ.get("NODEAGENT_K8S_CACHE", Path.home() / ".cache" / "nodeagent-k8s"))
    return root / f"helm-{HELM_VERSION}"


def ensure_helm() -> Path:
    """The pinned helm binary, built if it is not in the cache yet."""
    directory = cache_dir()
    binary = directory / "helm"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    go = shutil.which("go")
    if go is None:
        raise HelmBuildError(f"building helm {HELM_VERSION} needs Go (the go command) and the Go module proxy")
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be building it right now
        if binary.is_file():
            return binary
        staging = directory / "bin.partial"
        shutil.rmtree(staging, ignore_errors=True)
        env = {**os.environ, "GOBIN": str(staging), "CGO_ENABLED": "0"}
        done = subprocess.run([go, "install", "-ldflags", "-s -w", f"{HELM_MODULE}@{HELM_VERSION}"], env=env,
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise HelmBuildError(f"go install {HELM_MODULE}@{HELM_VERSION} failed:\n{done.stderr[-4000:]}")
        (staging / "helm").rename(binary)
        shutil.rmtree(staging, ignore_errors=True)
    return binary


if __name__ == "__main__":
    try:
        print(ensure_helm())
    except HelmBuildError as exc:
        sys.exit(str(exc))
