"""Kubernetes' rules for the names nodeagent writes: label keys and values, taint effects, DNS subdomains.

One home for each rule, its accepted form (as said in error messages) and its message, so that the
profile parser and the label computation refuse the same things with the same words. The rules are
the API server's (``k8s.io/apimachinery/pkg/util/validation``): a value it would reject is refused
here, before anything is written.
"""

from __future__ import annotations

import re

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
TAINT_EFFECT_FORM = f"one of {', '.join(TAINT_EFFECTS)}"

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_NAME = re.compile(rf"^{_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_NAME})?$")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")

LABEL_VALUE_FORM = "at most 63 characters of [A-Za-z0-9_.-], beginning and ending with a letter or digit"
LABEL_KEY_FORM = ("[prefix/]name such as 'pool' or 'example.com/pool': name at most 63 characters of "
                  "[A-Za-z0-9_.-] with alphanumeric ends, prefix a lower-case DNS subdomain of at most 253 characters")


def label_value_error(value: str) -> str | None:
    """Why ``value`` is not a valid Kubernetes label value, or None when it is."""
    if len(value) > 63:
        return f"{value[:20]!r}… is {len(value)} characters long ({LABEL_VALUE_FORM})"
    if not _LABEL_VALUE.match(value):
        return f"{value!r} is not a label value ({LABEL_VALUE_FORM})"
    return None


def label_key_error(key: object) -> str | None:
    """Why ``key`` is not a valid Kubernetes label (or taint) key, or None when it is."""
    if not isinstance(key, str):
        return f"{key!r} is not a Kubernetes label key ({LABEL_KEY_FORM})"
    prefix, _, name = key.rpartition("/")
    if "/" in prefix:
        return f"{key!r} has more than one '/' ({LABEL_KEY_FORM})"
    if "/" in key and (error := prefix_error(prefix)):
        return f"{key!r}: {error}"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return f"{key!r} is not a Kubernetes label key ({LABEL_KEY_FORM})"
    return None


def prefix_error(prefix: str) -> str | None:
    """Why ``prefix`` is not a label key prefix (a lower-case DNS subdomain), or None when it is."""
    if not prefix or len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix):
        return f"prefix {prefix!r} is not a lower-case DNS subdomain of at most 253 characters"
    return None


LABEL_NAME_FORM = "at most 63 characters of [A-Za-z0-9_.-], beginning and ending with a letter or digit"


def label_name_error(name: object) -> str | None:
    """Why ``name`` is not the name part of a label key (after the prefix's '/'), or None when it is."""
    if not isinstance(name, str) or not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return f"{name!r} is not a label name ({LABEL_NAME_FORM})"
    return None
