"""``nodeagent serve`` as a real subprocess, and the files the kubelet and the kernel drop for it
(ConfigMap volumes, uevents). The fixtures in tests/serve/conftest.py start and stop it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


PROFILES = REPO / "daemonset" / "profiles"


NODE = "node-a"


class ServeProcess:
    """``python -m nodeagent --root ROOT serve …`` with its JSON log lines collected."""

    def __init__(self, root: Path, args: list[str], *, env: dict[str, str] | None = None,
                 module: str = "nodeagent") -> None:
        self.root = root
        self.args = args
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "NODE_NAME"))}
        full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env.update(env or {})
        argv = [sys.executable, "-m", module, "--root", str(root), "serve", "--listen", "127.0.0.1:0", *args]
        self.proc = subprocess.Popen(argv, cwd=REPO, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        self.records.append(record)

    def logs(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.records)

    def log_text(self) -> str:
        with self._lock:
            return "\n".join(self.lines[-200:])

    def wait_log(self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited ({self.proc.returncode}) waiting for {what}:\n{self.log_text()}")
            return next((r for r in self.logs() if predicate(r)), None)

        try:
            return wait_for(found, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- serve log ---\n{self.log_text()}") from None

    def wait_serving(self, timeout: float = 20.0) -> str:
        record = self.wait_log(lambda r: "url" in r and "port" in r, timeout, "the HTTP server")
        self.url = str(record["url"])
        return self.url

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self, timeout: float = 20.0) -> None:
        try:
            wait_for(lambda: self.get("/readyz")[0] == 200, timeout, "/readyz 200")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.get('/readyz')}\n--- serve log ---\n{self.log_text()}") from None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait (bounded); SIGKILL if it does not go. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"serve did not stop within {timeout}s of SIGTERM:\n{self.log_text()}") from None
        self._reader.join(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def configmap_dir(directory: Path, files: dict[str, str], generation: int = 1) -> Path:
    """Lay ``files`` out as kubelet lays out a ConfigMap volume: ``..data`` → a timestamped directory,
    and one link per key into ``..data``. Calling it again swaps ``..data`` atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    real = directory / f"..2024_01_01_00_00_0{generation}.{os.getpid()}"
    real.mkdir()
    for name, text in files.items():
        (real / name).write_text(text)
    tmp_link = directory / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp_link.unlink()
    tmp_link.symlink_to(real.name)
    os.replace(tmp_link, directory / "..data")
    for name in files:
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
    for entry in directory.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in files:
            entry.unlink()
    for old in directory.glob("..2024_*"):
        if old != real:
            shutil.rmtree(old)
    return directory


def drop_uevent(spool: Path, *lines: str) -> None:
    """What the fixture tree's kernel would send: written aside, then renamed into the spool."""
    spool.mkdir(parents=True, exist_ok=True)
    name = f"{time.monotonic_ns()}"
    tmp = spool / f".{name}"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, spool / name)
