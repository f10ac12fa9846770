"""CPU identity on every architecture: which /proc/cpuinfo field names the vendor and model.

Each architecture's kernel prints its own cpuinfo (arch/*/kernel/*cpuinfo*). nodeagent reads the
field lscpu reads for the same fact (util-linux lscpu-cputype.c / lscpu-arm.c):

| architecture | vendor | model name |
|---|---|---|
| x86_64 | ``vendor_id`` | ``model name`` |
| aarch64 | ``CPU implementer`` via :data:`ARM_IMPLEMENTERS` | ``CPU part`` via :data:`ARM_PARTS` |
| ppc64le | "IBM" | ``cpu`` ("POWER9 (raw), altivec supported") |
| s390x | ``vendor_id`` ("IBM/S390") | ``machine =`` of the ``processor N:`` lines, via :data:`S390_MACHINES` |
| riscv64 | — | ``uarch``, else ``isa`` |
| loongarch64 | "Loongson" | ``Model Name`` |
"""

from __future__ import annotations

from nodeagent.value import Value, value

# MIDR_EL1 implementer codes, as lscpu names them.
ARM_IMPLEMENTERS = {
    0x41: "ARM", 0x42: "Broadcom", 0x43: "Cavium", 0x44: "DEC", 0x46: "FUJITSU", 0x48: "HiSilicon",
    0x49: "Infineon", 0x4D: "Motorola/Freescale", 0x4E: "NVIDIA", 0x50: "APM", 0x51: "Qualcomm",
    0x53: "Samsung", 0x56: "Marvell", 0x61: "Apple", 0x66: "Faraday", 0x69: "Intel", 0x6D: "Microsoft",
    0x70: "Phytium", 0xC0: "Ampere",
}

# (implementer, part) → model name. Arm's own server and common client cores, and the server
# parts of other implementers. Ampere Altra and AWS Graviton2 are Neoverse-N1 (0x41/0xd0c), NVIDIA
# Grace and AWS Graviton4 are Neoverse-V2 (0x41/0xd4f), Graviton3 is Neoverse-V1.
ARM_PARTS = {
    (0x41, 0xD03): "Cortex-A53", (0x41, 0xD04): "Cortex-A35", (0x41, 0xD05): "Cortex-A55",
    (0x41, 0xD07): "Cortex-A57", (0x41, 0xD08): "Cortex-A72", (0x41, 0xD09): "Cortex-A73",
    (0x41, 0xD0A): "Cortex-A75", (0x41, 0xD0B): "Cortex-A76", (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD0D): "Cortex-A77", (0x41, 0xD0E): "Cortex-A76AE", (0x41, 0xD40): "Neoverse-V1",
    (0x41, 0xD41): "Cortex-A78", (0x41, 0xD42): "Cortex-A78AE", (0x41, 0xD44): "Cortex-X1",
    (0x41, 0xD46): "Cortex-A510", (0x41, 0xD47): "Cortex-A710", (0x41, 0xD48): "Cortex-X2",
    (0x41, 0xD49): "Neoverse-N2", (0x41, 0xD4A): "Neoverse-E1", (0x41, 0xD4B): "Cortex-A78C",
    (0x41, 0xD4C): "Cortex-X1C", (0x41, 0xD4D): "Cortex-A715", (0x41, 0xD4E): "Cortex-X3",
    (0x41, 0xD4F): "Neoverse-V2", (0x41, 0xD80): "Cortex-A520", (0x41, 0xD81): "Cortex-A720",
    (0x41, 0xD82): "Cortex-X4", (0x41, 0xD84): "Neoverse-V3", (0x41, 0xD85): "Cortex-X925",
    (0x41, 0xD87): "Cortex-A725", (0x41, 0xD8E): "Neoverse-N3",
    (0x43, 0x0A1): "ThunderX 88XX", (0x43, 0x0AF): "ThunderX2 99xx", (0x43, 0x0B8): "ThunderX3",
    (0x46, 0x001): "A64FX",
    (0x48, 0xD01): "Kunpeng-920", (0x48, 0xD02): "Kunpeng-930",
    (0x4E, 0x000): "Denver", (0x4E, 0x003): "Denver 2", (0x4E, 0x004): "Carmel",
    (0x50, 0x000): "X-Gene",
    (0x51, 0x800): "Falkor V1/Kryo", (0x51, 0x801): "Kryo V2", (0x51, 0x802): "Kryo 3XX Gold",
    (0x51, 0x803): "Kryo 3XX Silver", (0x51, 0x804): "Kryo 4XX Gold", (0x51, 0x805): "Kryo 4XX Silver",
    (0x51, 0xC00): "Falkor", (0x51, 0xC01): "Saphira", (0x51, 0x001): "Oryon",
    (0x70, 0x660): "FTC660", (0x70, 0x661): "FTC661", (0x70, 0x662): "FTC662", (0x70, 0x663): "FTC663",
    (0x70, 0x664): "FTC664", (0x70, 0x303): "FTC310",
    (0xC0, 0xAC3): "Ampere-1", (0xC0, 0xAC4): "Ampere-1a",
}

# IBM Z machine types (the ``machine =`` of /proc/cpuinfo, "Type:" of /proc/sysinfo).
S390_MACHINES = {
    "2964": "IBM z13", "2965": "IBM z13s", "3906": "IBM z14", "3907": "IBM z14 ZR1", "8561": "IBM z15",
    "8562": "IBM z15 T02", "3931": "IBM z16", "3932": "IBM z16 A02", "9175": "IBM z17",
}


@value
class Identity(Value):
    """Which architecture printed a cpuinfo, its vendor and model names."""

    architecture: str | None
    vendor: str | None
    model_names: list[str]  # one per CPU type, in CPU order (big.LITTLE has several)


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo as blocks of ``key: value`` pairs (blank lines separate blocks).

    Keys keep their case and inner spaces ("CPU implementer", "model name"); a key seen twice in
    a block keeps its first value.
    """
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current.setdefault(key.strip(), value.strip())
    if current:
        blocks.append(current)
    return blocks


def merged(blocks: list[dict[str, str]]) -> dict[str, str]:
    """Every key's first value over all blocks (header, processor blocks and trailer alike)."""
    fields: dict[str, str] = {}
    for block in blocks:
        for key, text in block.items():
            fields.setdefault(key, text)
    return fields


def first_values(text: str) -> dict[str, str]:
    """``merged(parse_cpuinfo(text))`` without building a block per CPU.

    A key's first value is on the first line that carries it, and a line repeated in a later block
    (x86's flags, bugs, model name: most of each block) can add nothing, so only distinct lines are
    parsed: on a 224-CPU host that is a fifth of the lines, and no per-block dictionaries.
    """
    fields: dict[str, str] = {}
    for line in dict.fromkeys(text.splitlines()):
        key, sep, value = line.partition(":")
        if sep and line.strip():
            fields.setdefault(key.strip(), value.strip())
    return fields


#: The architectures whose model names differ per CPU block (big.LITTLE), so identify() needs the blocks.
PER_BLOCK_ARCHITECTURES = ("aarch64", "arm")


def architecture(fields: dict[str, str]) -> str | None:
    """The architecture whose kernel printed these fields (a fixture or a mounted root may not be ours)."""
    if "CPU implementer" in fields:
        return "aarch64" if fields.get("CPU architecture") in ("8", "AArch64") else "arm"
    if fields.get("vendor_id", "").startswith("IBM/S390"):
        return "s390x"
    if fields.get("cpu", "").startswith(("POWER", "PPC", "ppc")) or "timebase" in fields:
        return "ppc64le"
    if "isa" in fields and fields["isa"].startswith("rv"):
        return "riscv" + fields["isa"][2:4]
    if "Model Name" in fields or "Loongson" in fields.get("CPU Family", ""):
        return "loongarch64"
    if "vendor_id" in fields or "flags" in fields:
        return "x86_64"
    return None


def identify(blocks: list[dict[str, str]], fields: dict[str, str] | None = None) -> Identity:
    """The CPU's identity. ``fields`` (:func:`first_values`), when given, spares merging the blocks,
    which are then needed only for :data:`PER_BLOCK_ARCHITECTURES`."""
    fields = merged(blocks) if fields is None else fields
    arch = architecture(fields)
    if arch in PER_BLOCK_ARCHITECTURES:
        return _arm(blocks, arch)
    if arch == "ppc64le":
        return Identity(arch, "IBM", _present([fields.get("cpu")]))
    if arch == "s390x":
        return Identity(arch, fields.get("vendor_id"), _present([_s390_model(fields)]))
    if arch and arch.startswith("riscv"):
        return Identity(arch, None, _present([fields.get("uarch") or fields.get("isa")]))
    if arch == "loongarch64":
        return Identity(arch, "Loongson", _present([fields.get("Model Name")]))
    return Identity(arch, fields.get("vendor_id"), _present([fields.get("model name")]))


def _present(names: list[str | None]) -> list[str]:
    return [n for n in names if n]


def _hex(text: str | None) -> int | None:
    try:
        return int(text, 0) if text else None
    except ValueError:
        return None


def _arm(blocks: list[dict[str, str]], arch: str) -> Identity:
    vendors: list[str] = []
    names: list[str] = []
    for block in blocks:
        implementer, part = _hex(block.get("CPU implementer")), _hex(block.get("CPU part"))
        if implementer is None:
            continue
        vendor = ARM_IMPLEMENTERS.get(implementer, f"0x{implementer:02x}")
        name = ARM_PARTS.get((implementer, part)) if part is not None else None
        if name is None and block.get("model name"):
            name = block["model name"]  # 32-bit kernels print "ARMv7 Processor rev 4 (v7l)"
        if vendor not in vendors:
            vendors.append(vendor)
        if name and name not in names:
            names.append(name)
    return Identity(arch, vendors[0] if vendors else None, names)


def _s390_model(fields: dict[str, str]) -> str | None:
    """``processor 0: version = FF,  identification = 0133E8,  machine = 8561`` → "IBM z15 (8561)"."""
    for key, text in fields.items():
        if key.startswith("processor ") and "machine" in text:
            machine = text.rsplit("machine", 1)[1].strip(" =")
            return f"{S390_MACHINES.get(machine, 'IBM Z')} ({machine})"
    return None
