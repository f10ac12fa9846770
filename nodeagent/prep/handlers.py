"""How each kind of Change is read, applied (and verified), and restored.

Every handler's ``restore`` reads first and writes only what differs: it runs both for a change
that completed and for one that failed halfway (or never wrote at all, when the kernel refused
the very first write), and must leave the old value in place in every case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nodeagent.host import Host
from nodeagent.prep import hugepages, ksm, vfio
from nodeagent.prep.model import Change


class VerifyError(RuntimeError):
    """A write the kernel accepted but that did not take (read back differs)."""


@dataclass
class RunState:
    """What one apply carries between changes."""

    allocation: hugepages.AllocationPolicy
    allow_partial: bool = False


Before = Callable[[Host, Change], Any]
Apply = Callable[[Host, Change, RunState], None]
Restore = Callable[[Host, str | None, str, Any, dict[str, Any]], None]


# --- attr: one kernel attribute ---------------------------------------------------------------


def _attr_before(host: Host, change: Change) -> Any:
    assert change.path is not None
    return host.read_str(change.path)


def _attr_apply(host: Host, change: Change, state: RunState) -> None:
    assert change.path is not None
    host.write(change.path, str(change.desired))
    if host.dry_run:
        return
    got = host.read_str(change.path)
    if got != str(change.desired):
        raise VerifyError(f"{change.path}: wrote {change.desired!r}, the kernel reports {got!r}")


def _attr_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    assert path is not None
    if old is None or host.read_str(path) == str(old):
        return
    host.write(path, str(old))
    if not host.dry_run and host.read_str(path) != str(old):
        raise VerifyError(f"{path}: restored {old!r}, the kernel reports {host.read_str(path)!r}")


# --- ksm-stop ---------------------------------------------------------------------------------


def _ksm_stop_apply(host: Host, change: Change, state: RunState) -> None:
    assert change.path is not None
    ksm.stop(host, change.path)


# --- hugepages --------------------------------------------------------------------------------


def _pages_before(host: Host, change: Change) -> Any:
    assert change.path is not None
    return host.read_int(change.path)


def _pages_apply(host: Host, change: Change, state: RunState) -> None:
    hugepages.set_pages(host, change, state.allocation)


def _pages_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    assert path is not None
    if old is not None:
        hugepages.restore_pages(host, path, int(old))


# --- file / grub-dropin -----------------------------------------------------------------------


def _file_before(host: Host, change: Change) -> Any:
    assert change.path is not None
    return host.read_text(change.path)


def _file_apply(host: Host, change: Change, state: RunState) -> None:
    assert change.path is not None
    content = change.detail.get("content")
    _put_file(host, change.path, content)


def _put_file(host: Host, path: str, content: str | None) -> None:
    if content is None:
        host.remove(path)
    else:
        host.write_file(path, content)
    if not host.dry_run and host.read_text(path) != content:
        raise VerifyError(f"{path}: content differs from what was written")


def _file_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    assert path is not None
    if host.read_text(path) == old:
        return
    _put_file(host, path, old)


def _dropin_apply(host: Host, change: Change, state: RunState) -> None:
    """Write the drop-in, then regenerate. If regeneration fails, the old drop-in goes back
    before the error surfaces: grub.cfg was not rebuilt, so there is nothing else to undo."""
    assert change.path is not None
    old = host.read_text(change.path)
    _file_apply(host, change, state)
    try:
        _regenerate(host, change.detail.get("regenerate"))
    except RuntimeError:
        _put_file(host, change.path, old)
        raise


def _dropin_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    assert path is not None
    if host.read_text(path) == old:
        return
    _put_file(host, path, old)
    _regenerate(host, detail.get("regenerate"))


def _regenerate(host: Host, argv: list[str] | None) -> None:
    if not argv:
        return
    result = host.run(argv)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise RuntimeError(f"{' '.join(argv)} failed (exit {result.returncode})"
                           + (f": {detail[-1]}" if detail else ""))


# --- modprobe ---------------------------------------------------------------------------------


def _modprobe_apply(host: Host, change: Change, state: RunState) -> None:
    argv = change.detail["argv"]
    result = host.run(argv)
    if host.dry_run:
        return
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed (exit {result.returncode}): {result.stderr.strip()}")
    host.forget_paths()
    if not host.is_dir(f"{vfio.PCI_DRIVERS}/{vfio.VFIO}"):
        raise VerifyError(f"{' '.join(argv)} succeeded but {vfio.PCI_DRIVERS}/{vfio.VFIO} is absent")


def _no_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    return


def _nothing_before(host: Host, change: Change) -> Any:
    return change.current


# --- pci-bind ---------------------------------------------------------------------------------


def _bind_before(host: Host, change: Change) -> Any:
    return vfio.current_driver(host, change.target)


def _bind_apply(host: Host, change: Change, state: RunState) -> None:
    vfio.bind_vfio(host, change.target)


def _bind_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    vfio.restore_driver(host, target, old, detail.get("override"))


@dataclass(frozen=True)
class Handler:
    before: Before
    apply: Apply
    restore: Restore


HANDLERS: dict[str, Handler] = {
    "attr": Handler(_attr_before, _attr_apply, _attr_restore),
    "ksm-stop": Handler(_attr_before, _ksm_stop_apply, _attr_restore),
    "hugepages": Handler(_pages_before, _pages_apply, _pages_restore),
    "file": Handler(_file_before, _file_apply, _file_restore),
    "grub-dropin": Handler(_file_before, _dropin_apply, _dropin_restore),
    "modprobe": Handler(_nothing_before, _modprobe_apply, _no_restore),
    "pci-bind": Handler(_bind_before, _bind_apply, _bind_restore),
}
