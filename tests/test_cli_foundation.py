"""inspect / check from the command line: output forms, exit codes, and bad input."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from nodeagent.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_missing_root_is_a_usage_error_naming_the_option() -> None:
    result = run("--root", "/no/such/root", "inspect")
    assert result.exit_code == 2
    assert "--root" in result.output and "no such directory" in result.output
    assert "Traceback" not in result.output


def test_unknown_output_form_is_refused() -> None:
    result = run("inspect", "-o", "xml")
    assert result.exit_code == 2
    assert "'xml' is not one of 'text', 'json', 'yaml'" in result.output


def test_unknown_workload_is_refused() -> None:
    result = run("check", "--for", "gaming")
    assert result.exit_code == 2
    assert "gaming" in result.output and "realtime" in result.output


def test_inspect_forms_agree(host_trees) -> None:
    root = str(host_trees("minimal"))
    as_json = json.loads(run("--root", root, "inspect", "-o", "json").output)
    as_yaml = yaml.safe_load(run("--root", root, "inspect", "-o", "yaml").output)
    assert as_json == as_yaml
    text = run("--root", root, "inspect").output
    assert "NUMA node 0" in text and "Summary" in text


def test_root_from_environment(host_trees, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODEAGENT_ROOT", str(host_trees("minimal")))
    data = json.loads(run("inspect", "-o", "json").output)
    assert data["root"] == str(host_trees("minimal"))


def test_check_exit_code_follows_fail(host_trees) -> None:
    desktop = run("--root", str(host_trees("desktop-no-iommu")), "check")
    assert desktop.exit_code == 1
    assert "FAIL" in desktop.output
    rt = run("--root", str(host_trees("rt-isolated")), "check", "-o", "json", "--for", "realtime")
    data = json.loads(rt.output)
    assert data["readiness"]["realtime"]["ready"] is True
    assert rt.exit_code == (1 if any(c["status"] == "FAIL" for c in data["checks"]) else 0)


def test_check_for_an_unready_workload_fails(host_trees) -> None:
    result = run("--root", str(host_trees("minimal")), "check", "--for", "realtime")
    assert result.exit_code == 1
    assert "Checking readiness for realtime VMs" in result.output
