"""Waiting for a test condition, bounded: the one polling helper every test uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition",
             interval: float = 0.01) -> Any:
    """Poll a test condition (never the code under test's job) until truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not met within {timeout}s")
        time.sleep(interval)
