"""Parsers for the kernel's small text formats: cpulists, page sizes, the boot command line.

Each parser raises ``ValueError`` with a message that says what form was expected, so that
callers can name the file or the profile field the bad value came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_RANGE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+)/(\d+))?)?$")

CPULIST_FORM = "a kernel cpulist such as '0-3,8,10-15' (ranges may be strided: '0-31:2/4')"

#: The highest CPU id any cpulist may name when nothing better is known. The kernel's own
#: ceiling (``CONFIG_NR_CPUS``) is at most 8192 on every architecture Linux ships today; 2^16
#: leaves room for growth and keeps the largest possible list to 65536 integers.
MAX_CPU_ID = (1 << 16) - 1


def parse_cpulist(text: str, *, max_cpu: int = MAX_CPU_ID) -> list[int]:
    """Parse a kernel cpulist (``0-3,8,10-11``, also the strided ``0-15:2/4`` form).

    An empty string is the empty list (an empty ``isolated`` file is normal). Returns the CPUs
    sorted and de-duplicated. Every range is bounded *before* it is expanded: a CPU id above
    ``max_cpu`` (the host's highest CPU when the caller knows it, else :data:`MAX_CPU_ID`) is a
    ``ValueError``, so ``0-999999999`` costs nothing instead of gigabytes.
    """
    text = text.strip()
    if not text:
        return []
    cpus: set[int] = set()
    for part in text.split(","):
        single = part.strip()
        if single.isdecimal():  # one CPU: the pattern's own \d digits, without the pattern (512 a 1024-CPU host)
            cpu = int(single)
            if cpu > max_cpu:
                raise CpuIdRangeError(single, cpu, max_cpu)
            cpus.add(cpu)
            continue
        match = _RANGE.match(single)
        if not match:
            raise ValueError(f"{single!r} is not {CPULIST_FORM}")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ValueError(f"{single!r}: range end is below its start ({CPULIST_FORM})")
        if last > max_cpu:
            raise CpuIdRangeError(single, last, max_cpu)
        if match.group(3) is None:
            cpus.update(range(first, last + 1))
            continue
        used, group = int(match.group(3)), int(match.group(4))
        if group == 0 or used > group:
            raise ValueError(f"{single!r}: stride must be used/group with 0 < used <= group ({CPULIST_FORM})")
        for start in range(first, last + 1, group):
            cpus.update(c for c in range(start, min(start + used, last + 1)))
    return sorted(cpus)


class CpuIdRangeError(ValueError):
    """A cpulist names a CPU id above the bound it was parsed with."""

    def __init__(self, part: str, cpu: int, max_cpu: int) -> None:
        self.cpu = cpu
        self.max_cpu = max_cpu
        shown = part if len(part) <= 40 else part[:37] + "..."
        super().__init__(f"{shown!r}: CPU {cpu} is above the highest CPU id allowed here ({max_cpu})")


def format_cpulist(cpus: Iterable[int]) -> str:
    """Format CPUs as the kernel does: sorted ranges joined by commas (``0-3,8``)."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse_cpu_words(text: str) -> list[int]:
    """Parse a space-separated CPU list as cpufreq prints ``affected_cpus``/``related_cpus`` ("0 1 2 3").

    cpufreq's show_cpus() writes each CPU number followed by a space, not a cpulist; a cpulist
    (``0-3``) is accepted too, so a hand-made or future file still reads.
    """
    words = text.split()
    if len(words) == 1 and not words[0].isdigit():
        return parse_cpulist(words[0])
    cpus: set[int] = set()
    for word in words:
        if not word.isdigit():
            raise ValueError(f"{word!r} is not a CPU number (expected CPU numbers separated by spaces: '0 1 2 3')")
        cpus.add(int(word))
    return sorted(cpus)


def parse_cpumask(text: str) -> list[int]:
    """Parse a hex CPU mask as sysfs writes it (``ffffffff,00000000``) into CPU numbers."""
    digits = text.strip().replace(",", "")
    if not digits or not re.fullmatch(r"[0-9a-fA-F]+", digits):
        raise ValueError(f"{text.strip()!r} is not a hex cpumask such as 'ff,00000000'")
    digits = digits.lstrip("0") or "0"
    if len(digits) * 4 > MAX_CPU_ID + 1 + 3:
        raise ValueError(f"cpumask of {len(digits) * 4} bits: names CPUs above {MAX_CPU_ID}")
    value = int(digits, 16)
    if value.bit_length() > MAX_CPU_ID + 1:
        raise ValueError(f"cpumask names CPU {value.bit_length() - 1}, above {MAX_CPU_ID}")
    return [bit for bit in range(value.bit_length()) if value >> bit & 1]


# --- hugepage sizes -------------------------------------------------------------------------

SIZE_FORM = "a page size such as 2Mi or 1Gi (also accepted: 2M, 1G, 2048kB, 1048576kB)"

_SIZE = re.compile(r"^(\d+)\s*(kB|KB|Ki|K|k|Mi|MB|M|Gi|GB|G)$")
_SIZE_FACTORS_KB = {
    "kB": 1, "KB": 1, "Ki": 1, "K": 1, "k": 1,
    "Mi": 1024, "MB": 1024, "M": 1024,
    "Gi": 1024 * 1024, "GB": 1024 * 1024, "G": 1024 * 1024,
}


def parse_page_size_kb(text: str) -> int:
    """Parse a page size as people write it (``2Mi``, ``1G``, ``2048kB``) into kibibytes.

    Hugepage sizes are binary on Linux, so ``M``/``MB`` mean MiB here, as they do in the kernel's
    own ``hugepagesz=2M`` boot argument.
    """
    match = _SIZE.match(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not {SIZE_FORM}")
    kb = int(match.group(1)) * _SIZE_FACTORS_KB[match.group(2)]
    if kb <= 0:
        raise ValueError(f"{text!r} is not {SIZE_FORM}")
    return kb


def page_size_name(kb: int) -> str:
    """The canonical name of a page size in kibibytes: 2048 → ``2Mi``, 1048576 → ``1Gi``."""
    if kb % (1024 * 1024) == 0:
        return f"{kb // (1024 * 1024)}Gi"
    if kb % 1024 == 0:
        return f"{kb // 1024}Mi"
    return f"{kb}Ki"


def kernel_page_size_arg(kb: int) -> str:
    """A size as the kernel's ``hugepagesz=`` boot argument spells it (``2M``, ``1G``)."""
    if kb % (1024 * 1024) == 0:
        return f"{kb // (1024 * 1024)}G"
    if kb % 1024 == 0:
        return f"{kb // 1024}M"
    return f"{kb}K"


_HUGEPAGES_DIR = re.compile(r"^hugepages-(\d+)kB$")


def hugepages_dir_kb(name: str) -> int | None:
    """The page size of a sysfs ``hugepages-<N>kB`` directory, or None for any other name."""
    match = _HUGEPAGES_DIR.match(name)
    return int(match.group(1)) if match else None


# --- the boot command line ------------------------------------------------------------------


_SHLEX_BLANKS = str.maketrans("\t\r\n", "   ")


def split_cmdline(cmdline: str) -> list[str]:
    """Split ``/proc/cmdline`` into arguments, honouring the kernel's double quotes.

    Everything after a lone ``--`` belongs to init, not to the kernel, and is dropped.
    """
    if "'" in cmdline or '"' in cmdline or "\\" in cmdline:
        import shlex  # quotes are rare on a command line: the others spare its import and its slow scan

        try:
            words = shlex.split(cmdline, posix=True)
        except ValueError:
            words = cmdline.split()
    else:
        # Without quotes or backslashes, shlex.split (posix, whitespace_split) only cuts at its
        # whitespace, " \t\r\n", and drops empty words: the same, a hundred times faster.
        words = [word for word in cmdline.translate(_SHLEX_BLANKS).split(" ") if word]
    if "--" in words:
        words = words[: words.index("--")]
    return words


def cmdline_params(cmdline: str) -> dict[str, str | None]:
    """Map each kernel parameter to its value (None for a bare flag). Later ones win, as in the kernel."""
    params: dict[str, str | None] = {}
    for word in split_cmdline(cmdline):
        key, sep, value = word.partition("=")
        params[key] = value if sep else None
    return params


def isolcpus_cpus(value: str) -> tuple[list[int], list[str]]:
    """Split an ``isolcpus=`` value into its CPUs and its flags (``managed_irq``, ``domain``, ``nohz``).

    The kernel accepts flags before the cpulist: ``isolcpus=managed_irq,domain,2-23``.
    """
    flags: list[str] = []
    parts = value.split(",")
    while parts and parts[0] and not parts[0][0].isdigit():
        flags.append(parts.pop(0))
    return parse_cpulist(",".join(parts)), flags


# --- memory quantities ----------------------------------------------------------------------

QUANTITY_FORM = "a memory quantity such as 4Gi, 512Mi, 4G or a number of bytes"

_QUANTITY = re.compile(r"^(\d+)\s*(Ki|Mi|Gi|Ti|K|M|G|T|kB|KB|MB|GB|TB)?$")
_QUANTITY_FACTORS = {None: 1, "Ki": 1024, "K": 1024, "kB": 1024, "KB": 1024, "Mi": 1024**2, "M": 1024**2,
                     "MB": 1024**2, "Gi": 1024**3, "G": 1024**3, "GB": 1024**3, "Ti": 1024**4, "T": 1024**4,
                     "TB": 1024**4}


def parse_quantity_bytes(value: object) -> int | None:
    """A memory quantity (``4Gi``, ``512Mi``, ``4G``, a number of bytes) in bytes; None when it is not one.

    Binary units either way, as hugepage and kubelet reservations are counted in pages of binary sizes.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    match = _QUANTITY.match(value.strip()) if isinstance(value, str) else None
    if not match:
        return None
    return int(match.group(1)) * _QUANTITY_FACTORS[match.group(2)]


def format_bytes_binary(size: int) -> str:
    """Bytes in the largest binary unit that divides them exactly: 137438953472 → ``128Gi``."""
    for unit, factor in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
