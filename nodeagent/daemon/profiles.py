"""The profile directory (a mounted ConfigMap) and which profile selects this node.

Layout: one NodeProfile per ``*.yaml``/``*.yml`` file; names starting with ``.`` are skipped (a
ConfigMap volume keeps its real files in ``..data/`` and links each key to them). The directory
is read directly, not through the Host: like ``apply -f``, it is the operator's input, not a file
of the machine being described.

Selection rules (README "Profiles in daemon mode"):

* a profile selects a node when every ``nodeSelector.matchLabels`` pair is on the Node; labels
  nodeagent itself publishes do not count (a profile cannot select through its own output). An
  empty or absent selector selects every node, as an empty Kubernetes label selector does;
* no profile matches: the node is observed only (inventory, labels, metrics; no prep);
* several match: the first by file name is applied and the others are reported as a conflict
  (log, Event, ``nodeagent_profile_conflict``) until the selectors or labels are fixed. Choosing
  one deterministically keeps a node converged while an operator sorts it out; refusing all of
  them would drop the applied profile's taints from a node that still holds its workloads.

Reloads keep the last good version of a file that has become invalid (and report the error):
a typo in a ConfigMap edit must not silently turn a tuned, tainted node into an observed one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

# nodeagent.profile (the schema, its YAML reader, vGPU and GPU selectors) is imported by the first
# reload of a profile directory: a daemon without --profiles (the systemd unit's default) never loads it.
if TYPE_CHECKING:
    from nodeagent.profile import NodeProfile

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedProfile:
    """One profile file, validated structurally (host facts are checked when it is applied)."""

    file: str  # the name in the directory (the ConfigMap key)
    path: str
    text: str
    profile: NodeProfile
    digest: str  # sha256 of the text: "the same profile" across reloads

    @property
    def name(self) -> str:
        return self.profile.name


@dataclass(frozen=True)
class Selection:
    """The profiles whose selector the node satisfies, in file-name order; the first applies."""

    matched: tuple[LoadedProfile, ...] = ()

    @property
    def profile(self) -> LoadedProfile | None:
        return self.matched[0] if self.matched else None

    @property
    def conflicts(self) -> tuple[LoadedProfile, ...]:
        return self.matched[1:]

    def describe(self) -> str:
        if not self.matched:
            return "no profile selects this node: observe only"
        text = f"profile {self.matched[0].name} ({self.matched[0].file})"
        if self.conflicts:
            others = ", ".join(f"{p.name} ({p.file})" for p in self.conflicts)
            text += f"; also matching, ignored: {others}"
        return text


@dataclass
class ReloadResult:
    changed: bool
    errors: dict[str, str] = field(default_factory=dict)


Fingerprint = tuple[tuple[str, int, int, int], ...]


class ProfileStore:
    """The profiles of one directory, reloaded on demand; thread-compatible (one writer)."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.profiles: tuple[LoadedProfile, ...] = ()
        self.errors: dict[str, str] = {}  # file → why it is not (or no longer) loaded as written
        self._fingerprint: Fingerprint | None = None

    def fingerprint(self) -> Fingerprint:
        """Names, inodes, sizes and mtimes of the profile files: cheap enough to poll.

        Stat follows the ConfigMap's links, so the atomic swap of ``..data`` changes it.
        """
        if not self.directory:
            return ()
        entries = []
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return (("<unreadable>", 0, 0, 0),)
        for name in names:
            if not _is_profile_name(name):
                continue
            try:
                st = os.stat(os.path.join(self.directory, name))
            except OSError:
                continue
            entries.append((name, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(entries)

    def changed(self) -> bool:
        return self.directory is not None and self.fingerprint() != self._fingerprint

    def reload(self) -> ReloadResult:
        """Read the directory again. A file that no longer parses keeps its previous version."""
        if not self.directory:
            return ReloadResult(False)
        from nodeagent.profile import ProfileError

        fingerprint = self.fingerprint()
        previous = {p.file: p for p in self.profiles}
        loaded: list[LoadedProfile] = []
        errors: dict[str, str] = {}
        try:
            names = sorted(n for n in os.listdir(self.directory) if _is_profile_name(n))
        except OSError as exc:
            errors["<directory>"] = f"cannot list {self.directory}: {exc.strerror or exc}"
            names = []
            loaded = list(self.profiles)  # keep what we had: the mount may come back
        for name in names:
            path = os.path.join(self.directory, name)
            try:
                loaded.append(load_file(name, path))
            except ProfileError as exc:
                errors[name] = "; ".join(exc.errors)
                if name in previous:
                    loaded.append(previous[name])
                    errors[name] += " (keeping the previous version of this file)"
        changed = [p.digest for p in loaded] != [p.digest for p in self.profiles] or errors != self.errors
        self.profiles = tuple(loaded)
        self.errors = errors
        self._fingerprint = fingerprint
        names_seen: dict[str, str] = {}
        for profile in self.profiles:
            if profile.name in names_seen:
                log.warning("profiles %s and %s are both named %s", names_seen[profile.name], profile.file,
                            profile.name, extra={"profile": profile.name})
            names_seen.setdefault(profile.name, profile.file)
        return ReloadResult(changed, errors)

    def select(self, matches: Callable[[Mapping[str, str]], bool]) -> Selection:
        """The profiles whose ``nodeSelector.matchLabels`` satisfy ``matches``."""
        return Selection(tuple(p for p in self.profiles if matches(p.profile.node_selector)))


def load_file(name: str, path: str) -> LoadedProfile:
    """One profile file: at most MAX_PROFILE_BYTES, UTF-8, one valid NodeProfile."""
    import hashlib

    from nodeagent.profile import parse_profile_bytes, read_profile_bytes

    raw = read_profile_bytes(path)
    profile = parse_profile_bytes(raw, None, source=path)
    return LoadedProfile(name, path, profile.source_text or "", profile, hashlib.sha256(raw).hexdigest())


def labels_match(labels: Mapping[str, str]) -> Callable[[Mapping[str, str]], bool]:
    """A selector test against a fixed label set (a host without a cluster: ``--node-label``)."""
    return lambda selector: all(labels.get(k) == v for k, v in selector.items())


def _is_profile_name(name: str) -> bool:
    return not name.startswith(".") and name.endswith(SUFFIXES)
