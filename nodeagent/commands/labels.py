"""`nodeagent labels`: the labels and taints this node carries (and, with --publish, writes them)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from nodeagent.commands.common import (
    CliContext,
    dump_json,
    nfd_label_options,
    nfd_mode,
    output_option,
    profile_option,
    workload_classes_option,
    workload_table,
)
from nodeagent.contract import DEFAULT_LABEL_PREFIX as DEFAULT_PREFIX

if TYPE_CHECKING:
    from nodeagent.labels import LabelConfig, LabelSet


def _fail(code: int, message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@click.command()
@profile_option(required=False, help="A NodeProfile: adds its labels and taints (and the NVIDIA passthrough label).")
@output_option("text", "json")
@click.option("--prefix", envvar="NODEAGENT_LABEL_PREFIX", default=DEFAULT_PREFIX, show_default=True,
              help="Namespace of nodeagent's own labels and annotations. Env: NODEAGENT_LABEL_PREFIX.")
@nfd_label_options
@click.option("--publish", is_flag=True,
              help="Write them to this node's Node object and its NodeResourceTopology (once). An API server "
                   "that cannot be reached is retried with back-off for up to --publish-timeout seconds, "
                   "each failed attempt reported on stderr.")
@click.option("--publish-timeout", type=click.FloatRange(0, 3600), default=60.0, show_default=True,
              metavar="SECONDS", help="With --publish: how long transient API errors are retried.")
@click.option("--node-name", envvar="NODE_NAME", metavar="NAME",
              help="The Node to publish to. Env: NODE_NAME (downward API spec.nodeName).")
@click.option("--kubeconfig", metavar="FILE", type=click.Path(dir_okay=False),
              help="Kubeconfig to publish with (default: in-cluster service account, then $KUBECONFIG).")
@click.option("--topology/--no-topology", envvar="NODEAGENT_TOPOLOGY", default=True, show_default=True,
              help="With --publish: also write the NodeResourceTopology (off where nfd-topology-updater runs). "
                   "Env: NODEAGENT_TOPOLOGY.")
@workload_classes_option
@click.pass_obj
def labels(obj: CliContext, *, profile_path: str | None, output: str, prefix: str, nfd_labels: str,
           no_nfd_labels: bool, recipe_labels: bool, publish: bool, publish_timeout: float, node_name: str | None,
           kubeconfig: str | None, topology: bool, workload_classes: str | None) -> None:
    """Show the labels (and taints) this node would carry; --publish writes them to its Node."""
    from nodeagent.discover import discover
    from nodeagent.labels import LabelError, compute_labels, label_config_for

    inventory = discover(obj.host())
    profile = None
    if profile_path:
        from nodeagent.profile import ProfileError, load_profile

        try:
            profile = load_profile(profile_path, inventory)
        except ProfileError as exc:
            _fail(2, str(exc))
    base = workload_table(workload_classes)  # the file's classes, before the profile's
    table = workload_table(None, profile, base=base)
    try:
        config = label_config_for(nfd_mode(nfd_labels, no_nfd_labels), prefix=prefix,
                                  recipe_compatible=recipe_labels)
        ready = table.readiness(inventory)
        label_set = compute_labels(inventory, profile, config=config, readiness=ready)
    except LabelError as exc:
        _fail(2, str(exc))

    published = None
    if publish:
        published, label_set = _publish(inventory, profile, label_set, config, node_name=node_name,
                                        kubeconfig=kubeconfig, topology=topology, timeout=publish_timeout,
                                        workloads=table, base=base)
    if output == "json":
        data: dict[str, Any] = {
            "labels": label_set.labels,
            "taints": [t.to_api() for t in label_set.taints],
            "annotations": label_set.owned_annotations(config),
            "warnings": label_set.warnings,
            # why each ready-<class> label is what it is: reasons (not ready) and notes (not judged, not blocking)
            "readiness": {name: {"ready": r.ready, "reasons": r.reasons, "notes": r.notes}
                          for name, r in ready.items()},
        }
        if published is not None:
            data["published"] = published
        click.echo(dump_json(data))
    else:
        from nodeagent.terminal import render_labels

        click.echo(render_labels(label_set, config), nl=False)
        if published is not None:
            click.echo(f"\npublished to node {published['node']}: "
                       f"{'patched' if published['node_patched'] else 'already up to date'}; "
                       f"NodeResourceTopology {published['topology']}")
    for warning in label_set.warnings:
        click.echo(f"warning: {warning}", err=True)


def _publish(inventory: Any, profile: Any, label_set: LabelSet, config: LabelConfig, *, node_name: str | None,
             kubeconfig: str | None, topology: bool, timeout: float,
             workloads: Any, base: Any) -> tuple[dict[str, Any], LabelSet]:
    """Publish once; returns the result and the label set actually published."""
    from nodeagent.k8s import ApiError, K8sConfigError, connect, desired_state, publish_once, resolve_node_name
    from nodeagent.k8s.nodediff import NodeView, unmatched_selector
    from nodeagent.labels import compute_labels

    try:
        name = resolve_node_name(node_name)
        api = connect(kubeconfig)
    except K8sConfigError as exc:
        _fail(2, str(exc))
    server = getattr(getattr(api.api_client, "configuration", None), "host", "the API server")
    click.echo(f"publishing to node {name} via {server} (transient errors retried for up to {timeout:g} s)",
               err=True)
    try:
        if profile is not None and profile.node_selector:
            node = NodeView.from_api(api.get_node(name))
            missing = unmatched_selector(node, profile.node_selector, config)
            if missing:
                wanted = ", ".join(f"{k}={v}" for k, v in missing.items())
                workloads = base  # without the profile, without its classes
                label_set = compute_labels(inventory, None, config=config, workloads=base)
                label_set.warnings.append(f"node {name} does not match the profile's nodeSelector ({wanted}); "
                                          "published without the profile's labels and taints")
                profile = None
        usage = None
        if topology:
            from nodeagent.k8s.podresources import live_usage

            usage = live_usage(inventory)
        desired = desired_state(inventory, profile, node_name=name, label_config=config, topology=topology,
                                label_set=label_set, usage=usage, workloads=workloads)
        result = publish_once(api, name, desired, deadline=timeout)
    except ApiError as exc:
        _fail(1, f"publishing to node {name}: {exc}")
    finally:
        api.close()
    return result.to_dict(), label_set


COMMANDS = [labels]
