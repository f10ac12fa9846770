"""Node prep: plan → apply → revert for hugepages, vfio-pci, CPU governor, KSM, the kubelet's managers
and boot arguments.

``plan.build_plan`` turns a NodeProfile and the Inventory into typed Changes; ``apply.execute``
journals and applies them through the Host (or records them, in dry-run); ``apply.revert``
restores what the journal holds.

One module per subsystem owns its life cycle, as tuned's plugins do: ``hugepages``, ``ksm``,
``governor``, ``vfio``, ``kubelet`` (its CPU/topology/memory managers, where ``kubeletconfig`` says
they go), ``persist`` (the installed profile) and ``bootargs`` each expose a
:class:`~nodeagent.prep.lifecycle.SubsystemSpec`: the plan, the boot arguments it contributes and
the handlers of its actions. ``subsystems`` is the registry; ``bootargs`` assembles the
contributions (``isolation`` contributes only boot arguments) and hands them to the host's
bootloader writer (``grub``).
"""
