"""Where the daemon's memory goes when it publishes, and what a leaner client would save.

Each variant runs in a fresh interpreter that first imports what ``serve`` always imports
(nodeagent, discovery, metrics), then talks to a real API server (``tests/k8s/control-plane``)
the way the publisher does — GET the Node, PATCH its labels, create an Event — through:

* ``kubekapi``: nodeagent's ``KubeApi`` as it is (``kubernetes`` client: ``CoreV1Api`` and
  ``CustomObjectsApi`` over an ``ApiClient``);
* ``apiclient``: the same ``kubernetes.client.ApiClient`` (so the same kubeconfig and in-cluster
  loading, auth and TLS), but requests built with ``param_serialize``/``call_api`` instead of the
  generated ``CoreV1Api``;
* ``urllib3``: no ``kubernetes`` import at all: urllib3 with a bearer token, as an in-cluster
  client needs (the service-account token file, re-read when it rotates, and the CA bundle).

    python bench/serve/client_memory.py

Prints RSS after the imports, after the calls, and the module count, per variant.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

COMMON = """
import json, sys, psutil
sys.path.insert(0, {repo!r})
import nodeagent.cli, nodeagent.daemon.service, nodeagent.metrics, nodeagent.discover, nodeagent.k8s.loop
process = psutil.Process()
base = process.memory_info().rss
url, kubeconfig = {url!r}, {kubeconfig!r}
patch = {{"metadata": {{"labels": {{"nodeagent.io/kvm": "true"}}}}}}
event = {{"apiVersion": "v1", "kind": "Event", "metadata": {{"name": "n.1", "namespace": "default"}},
         "involvedObject": {{"kind": "Node", "name": "n"}}, "reason": "Bench", "message": "m"}}
"""

VARIANTS = {
    "kubekapi": """
from nodeagent.k8s.client import connect
api = connect(kubeconfig)
imported = process.memory_info().rss
api.get_node("n"); api.patch_node("n", patch); api.create_event(event)
""",
    "apiclient": """
from kubernetes import client, config
configuration = client.Configuration()
config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
api = client.ApiClient(configuration)
imported = process.memory_info().rss
def call(method, path, body=None, content_type="application/json"):
    m, u, h, b, _ = api.param_serialize(method, path, header_params={"Content-Type": content_type}, body=body,
                                        auth_settings=["BearerToken"])
    return json.loads(api.call_api(m, u, h, b, _request_timeout=(5, 15)).read())
call("GET", "/api/v1/nodes/n"); call("PATCH", "/api/v1/nodes/n", patch, "application/merge-patch+json")
call("POST", "/api/v1/namespaces/default/events", event)
""",
    "urllib3": """
import urllib3
pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=15))
headers = {"Authorization": "Bearer test-token", "Accept": "application/json"}
imported = process.memory_info().rss
def call(method, path, body=None, content_type="application/json"):
    data = json.dumps(body).encode() if body is not None else None
    response = pool.request(method, url + path, body=data, headers={**headers, "Content-Type": content_type})
    assert response.status < 300, response.status
    return json.loads(response.data)
call("GET", "/api/v1/nodes/n"); call("PATCH", "/api/v1/nodes/n", patch, "application/merge-patch+json")
call("POST", "/api/v1/namespaces/default/events", event)
""",
}

REPORT = """
print(json.dumps({"base_mib": base / 2**20, "imported_mib": imported / 2**20,
                  "after_calls_mib": process.memory_info().rss / 2**20, "modules": len(sys.modules)}))
"""


def main() -> None:
    sys.path.insert(0, str(REPO))
    from tests.k8s.cluster import running

    with running() as server, tempfile.TemporaryDirectory() as tmp:
        server.add_node("n")
        kubeconfig = server.agent_kubeconfig(Path(tmp) / "kubeconfig", "n")
        print("| client | serve's imports | + client loaded | after GET/PATCH/POST | modules |")
        print("|---|---|---|---|---|")
        for name, body in VARIANTS.items():
            code = COMMON.format(repo=str(REPO), url=server.url, kubeconfig=str(kubeconfig)) + body + REPORT
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {name} | {result['base_mib']:.1f} MiB | {result['imported_mib']:.1f} MiB | "
                  f"{result['after_calls_mib']:.1f} MiB | {result['modules']} |")


if __name__ == "__main__":
    main()
