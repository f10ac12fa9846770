"""daemonset/Dockerfile against the package and the host install: what it copies is what pip
needs, its base is pinned by digest, its Python dependencies by daemonset/constraints.txt (which
satisfies pyproject.toml), and its layout is systemd/install.sh's."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "daemonset" / "Dockerfile").read_text()
CONSTRAINTS = REPO / "daemonset" / "constraints.txt"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_the_base_is_pinned_by_digest_and_used_by_both_stages() -> None:
    steps = _instructions()
    base = next(v for k, v in steps if k == "ARG" and v.startswith("BASE="))
    assert re.fullmatch(r"BASE=[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", base), base
    assert [v.split()[0] for k, v in steps if k == "FROM"] == ["${BASE}", "${BASE}"]


def test_the_build_copies_what_pip_needs_to_build_the_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    copied = {src for k, v in _instructions() if k == "COPY" and "--from" not in v for src in v.split()[:-1]}
    assert {"pyproject.toml", project["project"]["readme"], "daemonset/constraints.txt", "nodeagent"} <= copied
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert packages == ["nodeagent*"]  # one package tree: the COPY of nodeagent/ is all of it
    run = " ".join(v for k, v in _instructions() if k == "RUN")
    assert "pip install" in run and "-c constraints.txt '.[all]'" in run


def test_every_dependency_is_pinned_within_what_pyproject_accepts() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for name in ("libvirt", "nvml", "k8s") for r in extras[name]]
    assert {r.name for r in map(Requirement, extras["all"])} == {"nodeagent"}  # all = the three above
    pins = _pins()
    for requirement in wanted:
        version = pins.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is not in daemonset/constraints.txt"
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)


def test_the_layout_is_the_host_installs() -> None:
    install = (REPO / "systemd" / "install.sh").read_text()
    prefix = re.search(r"^PREFIX=(\S+)$", install, re.MULTILINE).group(1)  # type: ignore[union-attr]
    run = " ".join(v for k, v in _instructions() if k == "RUN")
    assert f"python3 -m venv {prefix}" in run
    assert f"ln -s ../..{prefix}/bin/nodeagent /usr/bin/nodeagent" in run
    assert ("COPY", f"--from=build {prefix} {prefix}") in _instructions()
    assert ("ENTRYPOINT", '["nodeagent"]') in _instructions()  # the DaemonSet's args start with `serve`
