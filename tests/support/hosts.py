"""The fixture hosts: generated ones (``fixtures/specs``) and captured real ones (``fixtures/captures``)."""

from __future__ import annotations

from pathlib import Path

FIXTURE_HOSTS = ["intel-2s-8gpu", "amd-nps4-consumer", "rt-isolated", "desktop-no-iommu", "minimal",
                 "db-kubelet-defaults", "hgx-h100-nvswitch"]

CAPTURES = Path(__file__).resolve().parents[2] / "fixtures" / "captures"

CAPTURED_HOSTS = sorted(p.name.removesuffix(".tar.gz") for p in CAPTURES.glob("*.tar.gz"))
