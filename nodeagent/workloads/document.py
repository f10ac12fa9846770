"""The WorkloadClasses document: classes an operator overrides or adds, in a file or a ConfigMap.

    apiVersion: nodeagent.io/v1alpha1
    kind: WorkloadClasses
    metadata: {name: fleet-classes}        # optional
    classes:
      ai-training:
        requires:
          gpus: {passthrough: 4}           # this fleet's training VMs take four GPUs
      db-small:
        extends: database
        requires:
          hugepages: [{size: 1Gi, count: 16}]

Read strictly, as a NodeProfile is: unknown fields, duplicate keys, bad values are all reported at
once, each naming its field path and the accepted form, and nothing is used.
"""

from __future__ import annotations

from typing import Any

from nodeagent.workloads.defaults import default_table
from nodeagent.workloads.table import WorkloadClassesError, WorkloadTable
from nodeagent.yamldoc import YamlDocumentError, load_documents

API_VERSION = "nodeagent.io/v1alpha1"
KIND = "WorkloadClasses"
MAX_BYTES = 64 * 1024
FIELDS = ("apiVersion", "kind", "metadata", "classes")


def load_workload_classes(path: str, base: WorkloadTable | None = None) -> WorkloadTable:
    """The table of a WorkloadClasses file laid over ``base`` (the defaults when None).

    The path is the operator's own file (a mounted ConfigMap), read directly. Raises
    :class:`WorkloadClassesError`.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise WorkloadClassesError([f"cannot read the workload classes: {exc.strerror or exc}"], source=path) from exc
    if len(raw) > MAX_BYTES:
        raise WorkloadClassesError([f"larger than {MAX_BYTES // 1024} KiB; a WorkloadClasses document is a few KiB"],
                                   source=path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkloadClassesError([f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}"],
                                   source=path) from exc
    return parse_workload_classes_text(text, base, source=path)


def parse_workload_classes_text(text: str, base: WorkloadTable | None = None, *,
                                source: str | None = None) -> WorkloadTable:
    try:
        documents = load_documents(text)
    except YamlDocumentError as exc:
        raise WorkloadClassesError([exc.message], source=source) from exc
    if len(documents) != 1:
        raise WorkloadClassesError([f"expected exactly one YAML document (a {KIND}), found {len(documents)}"],
                                   source=source)
    return parse_workload_classes(documents[0], base, source=source)


def parse_workload_classes(data: Any, base: WorkloadTable | None = None, *,
                           source: str | None = None) -> WorkloadTable:
    """Validate a loaded WorkloadClasses mapping and lay its classes over ``base``."""
    base = default_table() if base is None else base
    if not isinstance(data, dict):
        raise WorkloadClassesError([f"(document): expected a mapping with fields {', '.join(FIELDS)}"], source=source)
    errors = [f"{key}: unknown field (allowed here: {', '.join(FIELDS)})" for key in data if key not in FIELDS]
    errors += [f"{key}: required field is missing" for key in ("apiVersion", "kind", "classes") if key not in data]
    if "apiVersion" in data and data["apiVersion"] != API_VERSION:
        errors.append(f"apiVersion: {data['apiVersion']!r} is not {API_VERSION!r}")
    if "kind" in data and data["kind"] != KIND:
        errors.append(f"kind: {data['kind']!r} is not {KIND!r}")
    if "metadata" in data and not isinstance(data["metadata"], dict):
        errors.append("metadata: expected a mapping (name, labels, annotations)")
    table = base
    if "classes" in data:
        try:
            table = base.overlay(data["classes"], "classes", source=source or KIND)
        except WorkloadClassesError as exc:
            errors += exc.errors
    if errors:
        raise WorkloadClassesError(errors, source=source)
    return table
