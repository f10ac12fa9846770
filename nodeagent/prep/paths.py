"""The host files nodeagent owns (CONTRACT §6), named once: prep writes them, discovery reads them.

Light on purpose: discovery imports it to tell whether a reboot or kubelet restart is pending.
"""

DROPIN_PATH = "/etc/default/grub.d/90-nodeagent.cfg"
MODPROBE_PATH = "/etc/modprobe.d/90-nodeagent-vfio.conf"
PROFILE_PATH = "/etc/nodeagent/profile.yaml"
JOURNAL_PATH = "/var/lib/nodeagent/journal.json"
LOCK_PATH = "/var/lib/nodeagent/apply.lock"
