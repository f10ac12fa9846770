"""Kernel text formats: cpulists, cpumasks, page sizes, the boot command line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodeagent.parse import (
    cmdline_params,
    format_cpulist,
    isolcpus_cpus,
    kernel_page_size_arg,
    page_size_name,
    parse_cpulist,
    parse_cpumask,
    parse_page_size_kb,
    split_cmdline,
)


@pytest.mark.parametrize(("text", "cpus"), [
    ("", []),
    ("0", [0]),
    ("0-3", [0, 1, 2, 3]),
    ("0-1,56-57", [0, 1, 56, 57]),
    ("2-11,14-23\n", [*range(2, 12), *range(14, 24)]),
    ("3,1,2,1", [1, 2, 3]),
    ("0-15:2/4", [0, 1, 4, 5, 8, 9, 12, 13]),
])
def test_parse_cpulist(text: str, cpus: list[int]) -> None:
    assert parse_cpulist(text) == cpus


@pytest.mark.parametrize("bad", ["0-", "a", "3-1", "1,,2", "-1", "0-7:0/0", "0-7:5/4"])
def test_parse_cpulist_rejects_garbage_and_names_the_form(bad: str) -> None:
    with pytest.raises(ValueError, match="cpulist"):
        parse_cpulist(bad)


@given(st.sets(st.integers(min_value=0, max_value=511)))
def test_format_then_parse_round_trips(cpus: set[int]) -> None:
    assert parse_cpulist(format_cpulist(cpus)) == sorted(cpus)


def test_format_cpulist_compresses_ranges() -> None:
    assert format_cpulist([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"


def test_parse_cpumask() -> None:
    assert parse_cpumask("00000000,0000000f\n") == [0, 1, 2, 3]
    assert parse_cpumask("1,00000000") == [32]
    with pytest.raises(ValueError):
        parse_cpumask("zz")


@pytest.mark.parametrize(("text", "kb"), [
    ("2Mi", 2048), ("2M", 2048), ("2048kB", 2048), ("1Gi", 1048576), ("1G", 1048576), ("1048576kB", 1048576),
])
def test_page_sizes(text: str, kb: int) -> None:
    assert parse_page_size_kb(text) == kb


@pytest.mark.parametrize("bad", ["2", "2 MiB", "0Mi", "two", "-2Mi", "1Ti"])
def test_bad_page_sizes_name_the_accepted_forms(bad: str) -> None:
    with pytest.raises(ValueError, match="2Mi or 1Gi"):
        parse_page_size_kb(bad)


def test_page_size_names() -> None:
    assert page_size_name(2048) == "2Mi"
    assert page_size_name(1048576) == "1Gi"
    assert page_size_name(64) == "64Ki"
    assert kernel_page_size_arg(1048576) == "1G"
    assert kernel_page_size_arg(2048) == "2M"


def test_cmdline_drops_init_arguments_and_keeps_quotes() -> None:
    line = 'BOOT_IMAGE=/vmlinuz root=UUID=1 quiet dyndbg="file a.c +p" isolcpus=2-3 -- --init-arg x'
    assert split_cmdline(line)[-1] == "isolcpus=2-3"
    params = cmdline_params(line)
    assert params["dyndbg"] == "file a.c +p"
    assert params["quiet"] is None
    assert "--init-arg" not in params


def _regex_cpulist(text: str, max_cpu: int = 1 << 16) -> list[int]:
    """parse_cpulist as it was before single CPUs skipped the pattern (the reference)."""
    import re

    cpus: set[int] = set()
    for part in text.strip().split(",") if text.strip() else []:
        match = re.match(r"^(\d+)(?:-(\d+)(?::(\d+)/(\d+))?)?$", part.strip())
        if not match:
            raise ValueError(part)
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first or last > max_cpu:
            raise ValueError(part)
        if match.group(3) is None:
            cpus.update(range(first, last + 1))
        else:
            used, group = int(match.group(3)), int(match.group(4))
            if group == 0 or used > group:
                raise ValueError(part)
            for start in range(first, last + 1, group):
                cpus.update(range(start, min(start + used, last + 1)))
    return sorted(cpus)


@given(st.text(alphabet=st.sampled_from(list("0129-,: /\n\t\u0663\u00b2\uff15")), max_size=16))
def test_parse_cpulist_single_cpus_parse_as_the_pattern_does(text: str) -> None:
    # A lone CPU skips the regular expression (isdecimal is \d's own digit class): the same CPUs,
    # and a ValueError for the same texts (superscripts are digits to isdigit, not to \d).
    try:
        expected: list[int] | None = _regex_cpulist(text)
    except ValueError:
        expected = None
    try:
        got: list[int] | None = parse_cpulist(text)
    except ValueError:
        got = None
    assert got == expected


@given(st.text(alphabet=st.sampled_from(list("ab=-,.0 \t\r\n\x0b\x0c\xa0\u2003\x00#é")), max_size=40))
def test_cmdline_without_quotes_splits_as_shlex_does(line: str) -> None:
    # split_cmdline leaves shlex unimported for a line without quotes or backslashes: the words are
    # shlex's (its whitespace only: a vertical tab or a no-break space stays inside a word).
    import shlex

    words = shlex.split(line, posix=True)
    assert split_cmdline(line) == (words[: words.index("--")] if "--" in words else words)


def test_isolcpus_flags_come_before_the_cpus() -> None:
    expected = ([*range(2, 12), *range(14, 24)], ["managed_irq", "domain"])
    assert isolcpus_cpus("managed_irq,domain,2-11,14-23") == expected
    assert isolcpus_cpus("1-3") == ([1, 2, 3], [])
