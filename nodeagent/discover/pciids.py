"""Names for PCI ids from the host's own ``pci.ids`` (the database lspci uses).

Only the ids asked for are looked up, by string search rather than by parsing the whole 1.3 MB
file, because discovery runs every few seconds in ``serve``.
"""

from __future__ import annotations

from nodeagent.host import Host
from nodeagent.value import Value, value

PCI_IDS_PATHS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")


@value
class PciName(Value):
    """A vendor's and a device's names in pci.ids (None when not listed)."""

    vendor: str | None
    device: str | None


class PciIds:
    """Lookups in one pci.ids text (or none, when the host has no database)."""

    def __init__(self, text: str | None) -> None:
        self._text = text or ""

    @classmethod
    def from_host(cls, host: Host) -> PciIds:
        for path in PCI_IDS_PATHS:
            text = host.read_text(path)
            if text is not None:
                return cls(text)
        return cls(None)

    def lookup(self, vendor_id: str, device_id: str) -> PciName:
        text = self._text
        vendor_at = _find_line(text, f"{vendor_id}  ", 0)
        if vendor_at < 0:
            return PciName(None, None)
        vendor_end = text.find("\n", vendor_at)
        vendor = text[vendor_at + len(vendor_id) + 2 : vendor_end].strip()
        device: str | None = None
        position = vendor_end + 1
        # Device lines are one tab deep; subsystem lines two; the block ends at the next vendor.
        while position < len(text):
            end = text.find("\n", position)
            end = len(text) if end < 0 else end
            line = text[position:end]
            if line and not line.startswith("\t") and not line.startswith("#"):
                break
            if line.startswith("\t") and not line.startswith("\t\t") and line[1:5] == device_id:
                device = line[7:].strip()
                break
            position = end + 1
        return PciName(vendor, device)


def _find_line(text: str, prefix: str, start: int) -> int:
    """Index of the first line that begins with ``prefix`` (vendor lines are not indented)."""
    if text.startswith(prefix):
        return 0
    at = text.find("\n" + prefix, start)
    return at + 1 if at >= 0 else -1
