"""What a person reads: one name for the profile option, help text as printed, progress while
`labels --publish` waits for an API server that does not answer."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

from click.testing import CliRunner

from nodeagent.cli import main

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "daemonset" / "profiles" / "hpc.yaml"


def test_every_command_that_reads_a_profile_calls_it_profile(host_trees) -> None:
    root = str(host_trees("intel-2s-8gpu"))
    for command in ("labels", "plan", "apply"):
        text = CliRunner().invoke(main, [command, "--help"]).output
        assert "-f, --profile PROFILE" in text, command
        assert "--filename" not in text, command  # the old name still parses (below), unadvertised
    new = CliRunner().invoke(main, ["--root", root, "plan", "--profile", str(PROFILE), "-o", "json"])
    old = CliRunner().invoke(main, ["--root", root, "plan", "--filename", str(PROFILE), "-o", "json"])
    assert new.exit_code == old.exit_code and new.output == old.output
    missing = CliRunner().invoke(main, ["--root", root, "plan"])
    assert missing.exit_code == 2 and "Missing option '-f' / '--profile'." in missing.output


def test_serve_help_prints_percent_signs_once() -> None:
    text = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200).output
    assert "±10%" in text and "%%" not in text


def _silent_server() -> tuple[socket.socket, list[socket.socket]]:
    """Accepts connections and never answers: an API server that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, held


def test_publish_says_where_it_publishes_and_how_long_it_retries(host_trees, tmp_path: Path) -> None:
    server, held = _silent_server()
    port = server.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
""")
    try:
        done = subprocess.run([sys.executable, "-m", "nodeagent", "--root", str(host_trees("minimal")), "labels",
                               "--publish", "--node-name", "n1", "--kubeconfig", str(kubeconfig),
                               "--publish-timeout", "1"], cwd=REPO, capture_output=True, text=True, timeout=120,
                              check=False)
    finally:
        server.close()
        for connection in held:
            connection.close()
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == f"publishing to node n1 via http://127.0.0.1:{port} (transient errors retried for up to 1 s)"
    assert "publishing to node n1: get node n1" in lines[-1]
    help_text = " ".join(CliRunner().invoke(main, ["labels", "--help"]).output.split())
    assert "for up to --publish-timeout seconds, each failed attempt reported on stderr" in help_text
