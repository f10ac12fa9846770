"""Fuzzing on raw bytes: profiles and host files, hostile ranges and sizes (issue 12).

Each test feeds bytes or text that were never produced by a serializer into a parser that reads
operator or host input, and asserts that only the documented error type comes out: a profile
gives a ``ProfileError`` (one message per field), a kernel text format a ``ValueError``, and
discovery over a garbled host file an inventory (with a warning), never a traceback. The number
of examples is fixed by the hypothesis profile (tests/conftest.py: ``ci`` is derandomized and
bounded; ``HYPOTHESIS_PROFILE=fuzz`` runs many more locally).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeagent.discover import discover
from nodeagent.host import Host, HostRecord, HostTrace
from nodeagent.parse import (
    MAX_CPU_ID,
    cmdline_params,
    hugepages_dir_kb,
    isolcpus_cpus,
    parse_cpulist,
    parse_cpumask,
    parse_page_size_kb,
    split_cmdline,
)
from nodeagent.profile import (
    MAX_LIST_ITEMS,
    MAX_PROFILE_BYTES,
    NodeProfile,
    ProfileError,
    load_profile,
    parse_profile_bytes,
)

# Integers from the ordinary to the absurd: CPU ids and counts an attacker would try.
HOSTILE_INTS = st.one_of(st.integers(0, 300), st.integers(0, 2**17), st.integers(0, 2**70),
                         st.sampled_from([MAX_CPU_ID, MAX_CPU_ID + 1, 2**31 - 1, 2**32, 2**63, 999_999_999]))


@st.composite
def cpulist_texts(draw: st.DrawFn) -> str:
    """Kernel cpulists, valid and not: huge ranges, strides, stray characters."""
    def part() -> str:
        first = draw(HOSTILE_INTS)
        form = draw(st.sampled_from(["one", "range", "stride", "junk"]))
        if form == "one":
            return str(first)
        last = first + draw(HOSTILE_INTS)
        if form == "range":
            return f"{first}-{last}"
        if form == "stride":
            return f"{first}-{last}:{draw(HOSTILE_INTS)}/{draw(HOSTILE_INTS)}"
        return draw(st.text(alphabet="0123456789-,:/ x\n", max_size=12))
    return ",".join(part() for _ in range(draw(st.integers(1, 4))))


# --- kernel text formats (host files and boot arguments) ---------------------------------------


@given(st.one_of(cpulist_texts(), st.text(max_size=200)))
def test_cpulist_parser_is_bounded_and_raises_only_valueerror(text: str) -> None:
    try:
        cpus = parse_cpulist(text)
    except ValueError:
        return
    assert all(0 <= c <= MAX_CPU_ID for c in cpus)
    assert cpus == sorted(set(cpus))


@given(st.one_of(st.text(alphabet="0123456789abcdefABCDEF,\n ", max_size=20000), st.text(max_size=100)))
def test_cpumask_parser_is_bounded(text: str) -> None:
    try:
        cpus = parse_cpumask(text)
    except ValueError:
        return
    assert all(0 <= c <= MAX_CPU_ID for c in cpus)


def test_a_huge_range_is_refused_before_it_is_expanded() -> None:
    # Before the bound this allocated ~10 GB; a bounded parser answers without expanding.
    for text in ("0-999999999", "0-99999999999999999999:1/1", "0,65536", "65535-65536"):
        with pytest.raises(ValueError, match=r"CPU \d+ is above the highest CPU id allowed here \(65535\)"):
            parse_cpulist(text)
    assert parse_cpulist("65535") == [65535]
    assert len(parse_cpulist(f"0-{MAX_CPU_ID}")) == MAX_CPU_ID + 1


@given(st.text(max_size=400))
def test_cmdline_parsers_never_raise(text: str) -> None:
    split_cmdline(text)
    params = cmdline_params(text)
    if "isolcpus" in params and params["isolcpus"] is not None:
        with contextlib.suppress(ValueError):
            isolcpus_cpus(params["isolcpus"])


@given(st.text(max_size=40))
def test_size_parsers_raise_only_valueerror(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert parse_page_size_kb(text) > 0
    hugepages_dir_kb(text)


# --- profiles: raw bytes, YAML shapes, hostile values and sizes --------------------------------


def _only_profile_errors(raw: bytes) -> NodeProfile | None:
    try:
        return parse_profile_bytes(raw)
    except ProfileError as exc:
        assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)
        return None


@given(st.binary(max_size=2048))
def test_profile_raw_bytes_give_a_profile_or_a_profile_error(raw: bytes) -> None:
    _only_profile_errors(raw)


# YAML-looking text: fragments of the real syntax glued together, tags and anchors included.
_YAML_BITS = st.sampled_from([
    "apiVersion: nodeagent.io/v1alpha1\n", "kind: NodeProfile\n", "metadata: {name: p}\n", "spec:\n",
    "  cpu: {isolated: ", "  hugepages:\n    pages:\n", "    - {size: 2Mi, count: ", "}\n", "]", "[", "{",
    "&a ", "*a", "<<: *a\n", "!!binary ", "!!python/object:os.system ", "!!timestamp ", "!!int ", "!!float ",
    "2001-13-45", "0x", "1e999", ".nan", "~", "null", "'", '"', "\\u", "\t", ": ", "- ", "? ", "---\n", "...\n",
    "9" * 5000, "\x00", "\ufeff", "\ud7ff",
])


@given(st.lists(st.one_of(_YAML_BITS, st.text(max_size=8)), max_size=30).map("".join))
def test_profile_yaml_fragments_give_a_profile_or_a_profile_error(text: str) -> None:
    _only_profile_errors(text.encode("utf-8", errors="surrogatepass"))


def _doc(spec: dict) -> bytes:
    return yaml.safe_dump({"apiVersion": "nodeagent.io/v1alpha1", "kind": "NodeProfile",
                           "metadata": {"name": "fuzz"}, "spec": spec}).encode()


_JSONISH = st.recursive(st.none() | st.booleans() | HOSTILE_INTS | st.floats() | st.text(max_size=10),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                    max_size=4),
                        max_leaves=12)


@given(st.fixed_dictionaries({}, optional={
    "cpu": st.fixed_dictionaries({}, optional={"isolated": cpulist_texts() | _JSONISH,
                                               "reserved": cpulist_texts() | _JSONISH, "governor": _JSONISH}),
    "hugepages": st.fixed_dictionaries({}, optional={
        "pages": st.lists(st.fixed_dictionaries({"size": st.sampled_from(["2Mi", "1Gi", "3Mi"]) | _JSONISH,
                                                 "count": HOSTILE_INTS | _JSONISH},
                                                optional={"numaNode": HOSTILE_INTS}), max_size=4) | _JSONISH,
        "reserveHostMemory": st.fixed_dictionaries({}, optional={"percent": _JSONISH, "minimum": _JSONISH}),
        "allocationTimeoutSeconds": _JSONISH}),
    "ksm": _JSONISH, "kernel": _JSONISH, "labels": _JSONISH, "taints": _JSONISH, "gpu": _JSONISH,
    "nodeSelector": _JSONISH,
}))
def test_profile_shapes_with_hostile_values(spec: dict) -> None:
    profile = _only_profile_errors(_doc(spec))
    if profile is not None and profile.cpu is not None:
        for cpus in (profile.cpu.isolated, profile.cpu.reserved):
            assert cpus is None or all(0 <= c <= MAX_CPU_ID for c in cpus)


def test_a_huge_cpu_range_in_a_profile_names_the_field() -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile_bytes(_doc({"cpu": {"isolated": "0-999999999"}}))
    assert caught.value.errors == [
        "spec.cpu.isolated: CPU 999999999 is above the highest CPU id accepted (65535)"]


def test_an_oversized_profile_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as handle:  # 10 MB: took 37 s to parse before the cap
        handle.write(_doc({"labels": {"a": "b"}}))
        handle.write(b"#" * (10 * 1024 * 1024) + b"\n")
    with pytest.raises(ProfileError) as caught:
        load_profile(str(path))
    assert caught.value.errors == [f"the profile is larger than {MAX_PROFILE_BYTES // 1024} KiB; a NodeProfile "
                                   "is a few KiB (split it, or remove what is not a NodeProfile)"]


@pytest.mark.parametrize(("spec", "field"), [
    ({"taints": [{"key": f"k{i}", "effect": "NoSchedule"} for i in range(MAX_LIST_ITEMS + 1)]}, "spec.taints"),
    ({"labels": {f"k{i}": "v" for i in range(MAX_LIST_ITEMS + 1)}}, "spec.labels"),
    ({"kernel": {"additionalArgs": [f"a{i}=1" for i in range(MAX_LIST_ITEMS + 1)]}}, "spec.kernel.additionalArgs"),
    ({"gpu": {"passthrough": [{"vendor": "10de"}] * (MAX_LIST_ITEMS + 1)}}, "spec.gpu.passthrough"),
])
def test_long_lists_are_refused_naming_the_field(spec: dict, field: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile_bytes(_doc(spec))
    assert caught.value.errors == [f"{field}: {MAX_LIST_ITEMS + 1} entries; at most {MAX_LIST_ITEMS} are accepted"]


def test_duplicate_keys_are_refused_naming_the_key() -> None:
    text = (b"apiVersion: nodeagent.io/v1alpha1\nkind: NodeProfile\nmetadata: {name: p}\nspec:\n"
            b"  hugepages:\n    pages:\n    - size: 2Mi\n      count: 4\n      count: 400\n")
    with pytest.raises(ProfileError) as caught:
        parse_profile_bytes(text)
    assert caught.value.errors == ["not valid YAML at line 9, column 7: duplicate key 'count' "
                                   "(first given at line 8)"]
    # A merge key may still be overridden by an explicit key: that is YAML, not a duplicate.
    merged = (b"apiVersion: nodeagent.io/v1alpha1\nkind: NodeProfile\nmetadata: {name: p}\nspec:\n"
              b"  labels: &l {pool: a}\n  nodeSelector: {matchLabels: {<<: *l, pool: b}}\n")
    assert parse_profile_bytes(merged).node_selector == {"pool": "b"}


def test_non_utf8_profile_is_a_clear_error_on_the_cli(host_trees, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from nodeagent.cli import main

    path = tmp_path / "latin1.yaml"
    path.write_bytes(_doc({"labels": {"a": "b"}}).replace(b"fuzz", b"caf\xe9"))  # metadata.name, line 4
    result = CliRunner().invoke(main, ["--root", str(host_trees("minimal")), "plan", "-f", str(path)])
    assert result.exit_code == 2, result.output
    assert "not UTF-8 text: byte 0xe9 at offset 73 (line 4); save the profile as UTF-8" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


# --- discovery over garbled host files --------------------------------------------------------


@pytest.fixture(scope="module")
def garbled_host(host_trees, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """A private copy of a fixture host, and the files discovery reads from it."""
    root = tmp_path_factory.mktemp("garbled") / "host"
    shutil.copytree(host_trees("intel-2s-8gpu"), root, symlinks=True)
    config = root / "var" / "lib" / "kubelet" / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("cpuManagerPolicy: static\nreservedSystemCPUs: 0-1\n")
    trace = HostTrace()
    discover(Host(str(root)), record=HostRecord(trace=trace))
    yield root, sorted(trace.files)


_HOST_BYTES = st.one_of(
    st.binary(max_size=256),
    cpulist_texts().map(str.encode),
    st.sampled_from([b"", b"\n", b"abc\n", b"-1\n", b"99999999999999999999999\n", b"0x10\n", b"(null)\n",
                     b"\xff\xfe\x00", b"9" * 5000, b"cpuManagerPolicy: [\n", b"reservedSystemCPUs: 0-999999999\n",
                     b"a: 2001-13-45\n", b"btime abc\n"]),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(data=st.data())
def test_discovery_survives_any_bytes_in_any_host_file(garbled_host: tuple[Path, list[str]],
                                                       data: st.DataObject) -> None:
    root, paths = garbled_host
    path = data.draw(st.sampled_from(paths), label="host file")
    content = data.draw(_HOST_BYTES, label="content")
    real = root / path.lstrip("/")
    real = real.resolve()
    original = real.read_bytes()
    real.write_bytes(content)
    try:
        inventory = discover(Host(str(root)))  # warnings are fine; an exception is not
        assert all(0 <= c <= MAX_CPU_ID for c in inventory.cpu.online)
    finally:
        real.write_bytes(original)


# The files whose text discovery parses beyond one integer: each gets its own share of examples.
PARSED_FILES = ["/var/lib/kubelet/config.yaml", "/proc/cmdline", "/proc/cpuinfo", "/proc/meminfo",
                "/proc/stat", "/sys/devices/system/cpu/online", "/sys/devices/system/cpu/nohz_full",
                "/sys/devices/system/cpu/isolated", "/sys/devices/system/node/node0/meminfo",
                "/sys/devices/system/node/node0/cpulist", "/sys/devices/system/node/node0/distance",
                "/sys/kernel/mm/transparent_hugepage/enabled", "/proc/modules", "/proc/version"]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=80)
@given(data=st.data())
def test_discovery_survives_hostile_text_in_the_files_it_parses(garbled_host: tuple[Path, list[str]],
                                                                data: st.DataObject) -> None:
    root, _ = garbled_host
    path = data.draw(st.sampled_from(PARSED_FILES), label="host file")
    yamlish = st.lists(st.one_of(_YAML_BITS, st.text(max_size=8)), max_size=12).map(
        lambda bits: "".join(bits).encode("utf-8", errors="surrogatepass"))
    content = data.draw(st.one_of(_HOST_BYTES, yamlish), label="content")
    real = (root / path.lstrip("/")).resolve()
    original = real.read_bytes() if real.exists() else None
    real.write_bytes(content)
    try:
        discover(Host(str(root)))
    finally:
        if original is None:
            real.unlink()
        else:
            real.write_bytes(original)


@pytest.mark.parametrize(("path", "content"), [
    # What the fuzzers found, kept as fixed cases.
    ("/var/lib/kubelet/config.yaml", b"cpuManagerPolicy: static\nx: 2001-13-45\n"),
    ("/var/lib/kubelet/config.yaml", b"reservedSystemCPUs: !!int\n"),
    ("/var/lib/kubelet/config.yaml", b"cpuManagerPolicy: [static]\nreservedSystemCPUs: {a: 1}\n"),
    ("/var/lib/kubelet/config.yaml", b"reservedSystemCPUs: 0-999999999\n"),
    ("/proc/stat", b"btime abc\n"),
    ("/sys/devices/system/cpu/online", b"0-999999999\n"),
])
def test_discovery_regressions_from_fuzzing(garbled_host: tuple[Path, list[str]], path: str, content: bytes) -> None:
    root, _ = garbled_host
    real = (root / path.lstrip("/")).resolve()
    original = real.read_bytes() if real.exists() else None
    real.write_bytes(content)
    try:
        inventory = discover(Host(str(root)))
        assert inventory.kubelet.cpu_manager_policy in (None, "static")
    finally:
        if original is None:
            real.unlink()
        else:
            real.write_bytes(original)


# --- journals: raw bytes and hostile entries ----------------------------------------------------

_ENTRY_VALUES = st.one_of(st.none(), st.booleans(), HOSTILE_INTS, st.text(max_size=12),
                          st.sampled_from(["/sys/kernel/mm/ksm/run", "attr", "hugepages", "file", "ksm-run",
                                           "pci-bind", "/etc/nodeagent/profile.yaml", "relative/path"]),
                          st.lists(st.text(max_size=4), max_size=2), st.dictionaries(st.text(max_size=4),
                                                                                     st.integers(), max_size=2))
_ENTRIES = st.lists(st.one_of(_ENTRY_VALUES, st.fixed_dictionaries(
    {}, optional={k: _ENTRY_VALUES for k in ("key", "target", "action", "path", "old", "reversible", "detail",
                                             "created_dirs", "subsystem", "status")})), max_size=5)


@pytest.fixture(scope="module")
def journal_host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.trees import TreeSpec, build_tree

    return build_tree(tmp_path_factory.mktemp("journal") / "host", TreeSpec())


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(raw=st.one_of(st.binary(max_size=512),
                     _ENTRIES.map(lambda e: json.dumps({"version": 1, "profile": "p", "entries": e}).encode()),
                     st.sampled_from([b"[]", b"{}", b'{"version": 1, "entries": {}}', b"[" * 5000 + b"]" * 5000,
                                      b'{"version": 1, "entries": [], "created_at": "x"}'])))
def test_a_journal_of_any_bytes_gives_a_journal_error_or_a_revert_never_a_traceback(journal_host: Path,
                                                                                    raw: bytes) -> None:
    from nodeagent.owned import JOURNAL_PATH
    from nodeagent.prep.apply import revert
    from nodeagent.prep.journal import Journal, JournalError

    path = journal_host / JOURNAL_PATH.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    host = Host(str(journal_host))
    try:
        lenient = Journal.load(host, strict=False)
    except JournalError:
        lenient = None
    result = revert(host)  # restores what is valid (fixture values: writes land in regular files)
    assert result.exit_code in (0, 1)
    if lenient is not None and lenient.invalid:
        assert result.exit_code == 1 and len(result.failed) >= len(lenient.invalid)
        assert not any(r.startswith("journal entry") for r in result.restored)
    path.unlink(missing_ok=True)
