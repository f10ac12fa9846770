"""Node prep: plan → apply → revert for hugepages, vfio-pci, CPU governor, KSM and boot arguments.

``plan.build_plan`` turns a NodeProfile and the Inventory into typed Changes; ``apply.execute``
journals and applies them through the Host (or records them, in dry-run); ``apply.revert``
restores what the journal holds. One module per subsystem plans its own changes.
"""
