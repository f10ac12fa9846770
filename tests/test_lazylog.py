"""The CLI's log configuration waits for ``import logging`` (nodeagent.lazylog), and applies exactly.

``nodeagent inspect`` on a healthy host never imports :mod:`logging`; whenever something does (a
warning of nodeagent's, a library, ``serve``'s own configuration), the root logger is left as an
eager ``logging.basicConfig`` at the CLI's start would have left it. Each case runs in a fresh
interpreter (pytest has imported logging long before)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORMAT = "%(levelname)s %(name)s: %(message)s"

# The root logger's state as a comparable dict, printed as the last line of stdout.
STATE = """
import json, logging, sys
root = logging.getLogger()
print(json.dumps({
    "level": root.level,
    "handlers": [[type(h).__name__, h.stream is sys.stderr, h.formatter._fmt if h.formatter else None,
                  type(h.formatter).__name__] for h in root.handlers],
    "loader": type(sys.modules["logging"].__loader__).__name__,
    "spec_loader": type(sys.modules["logging"].__spec__.loader).__name__,
}))
"""


def _python(code: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + code],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def _state(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


EAGER = f"""
import logging, sys
logging.basicConfig(level="INFO", stream=sys.stderr, format={FORMAT!r})
logging.getLogger("a.library").info("hello")
logging.getLogger("a.library").debug("not shown")
"""

LAZY = f"""
import sys
from nodeagent.lazylog import configure_when_imported
configure_when_imported(level="INFO", stream=sys.stderr, fmt={FORMAT!r})
assert "logging" not in sys.modules
import logging  # as a library would
logging.getLogger("a.library").info("hello")
logging.getLogger("a.library").debug("not shown")
"""


def test_the_configuration_applies_when_logging_is_first_imported() -> None:
    eager, lazy = _python(EAGER + STATE), _python(LAZY + STATE)
    assert _state(lazy) == _state(eager)
    assert _state(lazy)["handlers"] == [["StreamHandler", True, FORMAT, "Formatter"]]
    assert _state(lazy)["loader"] == "SourceFileLoader" == _state(lazy)["spec_loader"]  # the real loader, put back
    assert lazy.stderr == eager.stderr == "INFO a.library: hello\n"


def test_a_probe_for_logging_does_not_use_up_the_configuration() -> None:
    # importlib.util.find_spec("logging") only asks where logging is; the import after it configures.
    probed = LAZY.replace('assert "logging" not in sys.modules',
                          'import importlib.util\nassert importlib.util.find_spec("logging") is not None\n'
                          'assert "logging" not in sys.modules')
    assert _state(_python(probed + STATE)) == _state(_python(EAGER + STATE))


def test_two_configurations_waiting_apply_as_two_eager_calls_would() -> None:
    # The CLI's main run twice before anything imported logging: the first configuration wins,
    # as the second basicConfig call is a no-op once the root logger has a handler.
    twice = LAZY.replace('configure_when_imported(level="INFO"',
                         'configure_when_imported(level="ERROR", stream=sys.stderr, fmt="%(message)s")\n'
                         'configure_when_imported(level="INFO"')
    eager = EAGER.replace('logging.basicConfig(level="INFO"',
                          'logging.basicConfig(level="ERROR", stream=sys.stderr, format="%(message)s")\n'
                          'logging.basicConfig(level="INFO"')
    lazy_run, eager_run = _python(twice + STATE), _python(eager + STATE)
    assert _state(lazy_run) == _state(eager_run)
    assert lazy_run.stderr == eager_run.stderr == ""


def test_the_configuration_applies_at_once_when_logging_is_already_imported() -> None:
    code = "import logging\n" + LAZY.replace('assert "logging" not in sys.modules', "") + STATE
    assert _state(_python(code)) == _state(_python(EAGER + STATE))


def test_a_lazy_logger_logs_through_the_configured_root() -> None:
    code = f"""
import sys
from nodeagent.lazylog import configure_when_imported, get_logger
configure_when_imported(level="WARNING", stream=sys.stderr, fmt={FORMAT!r})
log = get_logger("nodeagent.x")
assert "logging" not in sys.modules
log.info("not shown")
log.warning("shown %s", 1)
assert log.isEnabledFor(30) and not log.isEnabledFor(20)
"""
    assert _python(code).stderr == "WARNING nodeagent.x: shown 1\n"


def test_serve_configuration_still_replaces_the_cli_one() -> None:
    code = f"""
import sys
from nodeagent.lazylog import configure_when_imported
configure_when_imported(level="WARNING", stream=sys.stderr, fmt={FORMAT!r})
from nodeagent.daemon.jsonlog import configure_logging
configure_logging("info", "json")
""" + STATE
    state = _state(_python(code))
    assert state["level"] == 20
    assert state["handlers"] == [["StreamHandler", True, "%(message)s", "JsonFormatter"]]


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = f"""
import sys, atexit
atexit.register(lambda: sys.stdout.write("\\nMODULES " + " ".join(sorted(sys.modules)) + "\\n"))
sys.argv = ["nodeagent", "--root", {str(root)!r}, *{list(args)!r}]
from nodeagent.cli import main
main()
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def _modules(done: subprocess.CompletedProcess[str]) -> set[str]:
    line = next(line for line in done.stdout.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:])


def test_inspect_of_a_healthy_host_imports_neither_logging_nor_json(host_trees) -> None:
    done = _cli(host_trees("intel-2s-8gpu"), "inspect", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert not _modules(done) & {"logging", "json", "shlex"}


def test_inspect_warnings_are_logged_in_the_cli_format_at_the_cli_level(fresh_host_tree) -> None:
    root = fresh_host_tree("minimal")
    (root / "sys/devices/system/cpu/isolated").write_text("0-\n")
    warned = _cli(root, "inspect", "-o", "json")
    assert warned.returncode == 0, warned.stderr
    assert warned.stderr.startswith("WARNING nodeagent.host: /sys/devices/system/cpu/isolated: '0-' is not a kernel "
                                    "cpulist"), warned.stderr
    quiet = _cli(root, "--log-level", "error", "inspect", "-o", "json")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert "logging" in _modules(quiet)  # the warning went through logging, which the level filtered
