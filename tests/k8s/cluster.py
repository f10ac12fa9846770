"""The tests' Kubernetes: the real control plane of ``tests/k8s/control-plane``, driven from Python.

* :class:`ControlPlane`: one ``control-plane up DIR`` per test session (etcd, kube-apiserver,
  kube-scheduler), with the shipped ``daemonset/`` applied server-side, so the agent's ServiceAccount,
  its ClusterRole and the ValidatingAdmissionPolicy are the real ones. ``admin`` is a small raw-JSON
  client (cluster-admin, straight to the server) for arranging and inspecting state.
* :class:`ApiServer`: what one test sees: the :class:`~tests.k8s.faultproxy.FaultProxy` in front of
  the server (faults, the request log), Nodes made and changed as kubelet and other controllers
  would, and everything reset between tests.

Credentials: the agent runs with a token of its own ServiceAccount from the TokenRequest API, bound
to a Pod on its node, so the server adds ``authentication.kubernetes.io/node-name`` to its user
info, which is what the admission policy reads; "someone else" (an operator, another controller)
is a cluster-admin ServiceAccount. Both speak through the proxy, so both are in its request log.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from tests.k8s.faultproxy import Fault, FaultProxy, Request

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "k8s" / "control-plane"
MONITORING_CRDS = REPO / "tests" / "k8s" / "fixtures" / "prometheus-operator"
NRT_PATH = "/apis/topology.node.k8s.io/v1alpha2/noderesourcetopologies"
NRT_CRD = "noderesourcetopologies.topology.node.k8s.io"
#: NFD's NodeFeature CRD (a minimal one written for the tests), for the --nfd-labels=auto tests.
NFD_CRD_FILE = REPO / "tests" / "k8s" / "fixtures" / "nfd" / "nodefeatures.yaml"
NFD_CRD = "nodefeatures.nfd.k8s-sigs.io"
NODEFEATURE_PATH = "/apis/nfd.k8s-sigs.io/v1alpha1/nodefeatures"
NFD_NAMESPACE = "node-feature-discovery"
AGENT_NAMESPACE = "nodeagent"
AGENT_SERVICE_ACCOUNT = "nodeagent"
ADMIN_SERVICE_ACCOUNT = ("kube-system", "nodeagent-test-admin")


class KubeError(Exception):
    """A request of the test's own admin client failed."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:500]}")
        self.status = status
        self.body = body


class Admin:
    """cluster-admin over plain JSON, straight to the server (never through the proxy)."""

    def __init__(self, server: str, pki: Path, headers: dict[str, str] | None = None) -> None:
        self.server = server
        self.pki = pki
        self.headers = dict(headers or {})
        self.impersonate_groups: list[str] = []
        self.impersonate_extra: dict[str, list[str]] = {}
        self.context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

    def impersonating(self, user: str, groups: list[str], extra: dict[str, list[str]] | None = None) -> Admin:
        """The same client acting as ``user`` (Impersonate-* headers: authorized and admitted as that user)."""
        headers = {"Impersonate-User": user}
        client = Admin(self.server, self.pki, headers)
        client.impersonate_groups = list(groups)
        client.impersonate_extra = {k: list(v) for k, v in (extra or {}).items()}
        return client


    def _headers(self, content_type: str) -> list[tuple[str, str]]:
        headers = [("Content-Type", content_type), ("Accept", "application/json"), *self.headers.items()]
        headers += [("Impersonate-Group", group) for group in self.impersonate_groups]
        for key, values in self.impersonate_extra.items():
            headers += [(f"Impersonate-Extra-{quote(key, safe='')}", value) for value in values]
        return headers

    def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
                query: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        deadline = time.monotonic() + 60
        while True:  # 429 (a CRD's storage still initializing, API Priority and Fairness): wait as told
            status, text = self.send(method, path, data, content_type=content_type, query=query, timeout=timeout)
            if status != 429 or time.monotonic() > deadline:
                break
            time.sleep(_retry_after(text))
        if status >= 400:
            raise KubeError(status, text)
        return json.loads(text) if text else None

    def text(self, path: str) -> str:
        """A plain-text endpoint (/readyz, /metrics)."""
        status, text = self.send("GET", path, None, content_type="text/plain")
        if status >= 400:
            raise KubeError(status, text)
        return text

    def send(self, method: str, path: str, data: bytes | None, *, content_type: str,
             query: dict[str, Any] | None = None, timeout: float = 30) -> tuple[int, str]:
        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        connection = http.client.HTTPSConnection(self._host, self._port, context=self.context, timeout=timeout)
        try:
            connection.putrequest(method, url.removeprefix(self.server))
            for key, value in self._headers(content_type):  # repeated headers (several groups) kept apart
                connection.putheader(key, value)
            connection.putheader("Content-Length", str(len(data or b"")))
            connection.endheaders(data)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
        finally:
            connection.close()
        return response.status, text

    @property
    def _host(self) -> str:
        return urlsplit(self.server).hostname or "127.0.0.1"

    @property
    def _port(self) -> int:
        return urlsplit(self.server).port or 443

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query or None)

    def create(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any, kind: str = "merge") -> Any:
        return self.request("PATCH", path, body, content_type=f"application/{kind}-patch+json")

    def delete(self, path: str, **query: Any) -> Any:
        try:
            return self.request("DELETE", path, query=query or None)
        except KubeError as error:
            if error.status != 404:
                raise
            return None

    def watch_lines(self, path: str, timeout_s: int, **query: Any) -> list[dict[str, Any]]:
        """The events of a watch that the server ends after ``timeout_s``."""
        query = {**query, "watch": "true", "timeoutSeconds": str(timeout_s)}
        url = f"{self.server}{path}?{urlencode(query)}"
        with urllib.request.urlopen(url, context=self.context, timeout=timeout_s + 10) as response:
            return [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]


def _retry_after(text: str) -> float:
    try:
        return float(json.loads(text).get("details", {}).get("retryAfterSeconds") or 1)
    except (ValueError, AttributeError):
        return 1.0


class ControlPlane:
    """A running ``tests/k8s/control-plane up DIR``, with the shipped manifests applied."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.state: dict[str, Any] = {}
        self.admin: Admin
        self._tokens: dict[tuple[str, str, str | None], str] = {}

    @property
    def server(self) -> str:
        return str(self.state["server"])

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        """cluster-admin (a client certificate in system:masters), straight to the server."""
        return self.dir / "kubeconfig"

    def up(self) -> None:
        result = subprocess.run([str(SCRIPT), "up", str(self.dir)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"tests/k8s/control-plane up failed:\n{result.stdout}\n{result.stderr}")
        self.state = json.loads((self.dir / "state.json").read_text())
        self.admin = Admin(self.server, self.pki)

    def down(self) -> None:
        subprocess.run([str(SCRIPT), "down", str(self.dir)], capture_output=True, text=True, check=False)

    def kubectl(self, *args: str, check: bool = True, kubeconfig: Path | None = None,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [self.state["kubectl"], f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, input=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def install_shipped(self) -> None:
        """Apply what a cluster operator applies: the monitoring CRDs it needs, then ``daemonset/``."""
        self.kubectl("apply", "--server-side", "-f", str(MONITORING_CRDS))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(MONITORING_CRDS))
        self.kubectl("apply", "--server-side", "-k", str(REPO / "daemonset"))
        self.wait_policy_enforced()
        ns, name = ADMIN_SERVICE_ACCOUNT
        self.admin.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": name}})
        self.admin.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]})

    def wait_policy_enforced(self, namespace: str = AGENT_NAMESPACE) -> None:
        """Until the API server enforces the ValidatingAdmissionPolicy (it loads new policies a moment
        after they are stored): a dry-run write by the agent to a Node not its own is denied."""
        probe = "admission-policy-probe"
        self.admin.delete(f"/api/v1/nodes/{probe}")
        self.admin.create("/api/v1/nodes", {"metadata": {"name": probe}})
        stranger = self.admin.impersonating(
            f"system:serviceaccount:{namespace}:{AGENT_SERVICE_ACCOUNT}",
            ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
            {"authentication.kubernetes.io/node-name": ["another-node"]})

        def denied() -> bool:
            status, _ = stranger.send("PATCH", f"/api/v1/nodes/{probe}",
                                      json.dumps({"metadata": {"labels": {"nodeagent.io/probe": "x"}}}).encode(),
                                      content_type="application/merge-patch+json", query={"dryRun": "All"})
            return status == 403

        try:
            _wait(denied, 60, "the admission policy to be enforced")
        finally:
            self.admin.delete(f"/api/v1/nodes/{probe}")

    # --- credentials ---------------------------------------------------------------------------

    def token(self, namespace: str, service_account: str, *, node: str | None = None) -> str:
        """A TokenRequest token; with ``node``, bound to a Pod on that node (the server then puts the
        node's name in the token's user info, as for the agent's projected token in a DaemonSet pod)."""
        key = (namespace, service_account, node)
        if key in self._tokens:
            return self._tokens[key]
        spec: dict[str, Any] = {"expirationSeconds": 86400}
        if node is not None:
            pod = self.agent_pod(namespace, service_account, node)
            spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod["metadata"]["name"],
                                      "uid": pod["metadata"]["uid"]}
        review = self.admin.create(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        self._tokens[key] = review["status"]["token"]
        return self._tokens[key]

    def agent_pod(self, namespace: str, service_account: str, node: str) -> dict[str, Any]:
        """The agent's pod on ``node`` (bound there already: no kubelet runs it, only its token is used)."""
        name = f"{service_account}-{node}"
        path = f"/api/v1/namespaces/{namespace}/pods"
        try:
            return self.admin.get(f"{path}/{name}")
        except KubeError as error:
            if error.status != 404:
                raise
        return self.admin.create(path, {
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "nodeagent-test-token"}},
            "spec": {"nodeName": node, "serviceAccountName": service_account, "automountServiceAccountToken": False,
                     "containers": [{"name": "agent", "image": "nodeagent:test"}]}})

    def write_kubeconfig(self, path: Path, token: str, server: str | None = None) -> str:
        """A kubeconfig with a bearer token, for ``server`` (default: the real server)."""
        import base64

        ca = base64.b64encode((self.pki / "ca.crt").read_bytes()).decode()
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": server or self.server,
                                                      "certificate-authority-data": ca}}],
            "users": [{"name": "test", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        }
        path.write_text(json.dumps(config, indent=2) + "\n")
        path.chmod(0o600)
        return str(path)

    def agent_kubeconfig(self, path: Path, node: str, server: str | None = None) -> str:
        """The agent on ``node``, as its own ServiceAccount."""
        return self.write_kubeconfig(path, self.token(AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT, node=node), server)

    def admin_kubeconfig(self, path: Path, server: str | None = None) -> str:
        """Someone else: a cluster-admin ServiceAccount."""
        return self.write_kubeconfig(path, self.token(*ADMIN_SERVICE_ACCOUNT), server)

    # --- state between tests -------------------------------------------------------------------

    def reset(self) -> None:
        """Delete every Node, NodeResourceTopology, Event and test pod; the NRT CRD is installed."""
        self.admin.delete("/api/v1/nodes")
        if not self.crd_installed():
            self.install_crd()
        self.admin.delete(NRT_PATH)
        for namespace in ("default", AGENT_NAMESPACE):
            self.admin.delete(f"/api/v1/namespaces/{namespace}/events")
            # Pods bound to a node wait for their kubelet to confirm a graceful delete: none runs here.
            self.admin.delete(f"/api/v1/namespaces/{namespace}/pods", gracePeriodSeconds="0",
                              labelSelector="app.kubernetes.io/name!=nodeagent-test-token")

    def crd_installed(self) -> bool:
        return self._serves(NRT_PATH)

    def remove_crd(self) -> None:
        self.admin.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{NRT_CRD}")
        _wait(lambda: not self.crd_installed(), 60, "the NodeResourceTopology CRD to go")

    def install_crd(self) -> None:
        self.kubectl("apply", "--server-side", "-k", str(REPO / "daemonset" / "crds"))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{NRT_CRD}")
        _wait(self.crd_installed, 60, "the NodeResourceTopology CRD to serve")


    def install_nfd_crd(self) -> None:
        """NFD's NodeFeature CRD, Established and serving, and the namespace nfd-worker writes into."""
        self.kubectl("apply", "--server-side", "-f", str(NFD_CRD_FILE))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{NFD_CRD}")
        _wait(lambda: self._serves(NODEFEATURE_PATH), 60, "the NodeFeature CRD to serve")
        try:
            self.admin.create("/api/v1/namespaces", {"metadata": {"name": NFD_NAMESPACE}})
        except KubeError as error:
            if error.status != 409:
                raise

    def remove_nfd_crd(self) -> None:
        """NFD gone again (its CRD deleted with every NodeFeature object), as for the other tests."""
        self.admin.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{NFD_CRD}")
        _wait(lambda: not self._serves(NODEFEATURE_PATH), 60, "the NodeFeature CRD to go")

    def _serves(self, path: str) -> bool:
        try:
            self.admin.get(path)
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Topologies(MutableMapping[str, dict[str, Any]]):
    """The NodeResourceTopology objects, by name, read and written as cluster-admin."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin

    def __getitem__(self, name: str) -> dict[str, Any]:
        try:
            return self.admin.get(f"{NRT_PATH}/{quote(name)}")
        except KubeError as error:
            if error.status == 404:
                raise KeyError(name) from None
            raise

    def __setitem__(self, name: str, obj: dict[str, Any]) -> None:
        body = json.loads(json.dumps(obj))
        body.setdefault("metadata", {})["name"] = name
        body["metadata"].pop("resourceVersion", None)
        self.admin.create(NRT_PATH, body)

    def __delitem__(self, name: str) -> None:
        if self.admin.delete(f"{NRT_PATH}/{quote(name)}") is None:
            raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter([item["metadata"]["name"] for item in self.admin.get(NRT_PATH)["items"]])

    def __len__(self) -> int:
        return len(self.admin.get(NRT_PATH)["items"])


class ApiServer:
    """One test's view of the real API server: the fault proxy's URL, faults, request log and state."""

    def __init__(self, plane: ControlPlane, proxy: FaultProxy) -> None:
        self.plane = plane
        self.proxy = proxy
        self.admin = plane.admin
        self.topologies = Topologies(plane.admin)

    # --- the proxy -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def requests(self) -> list[Request]:
        with self.proxy.lock:
            return list(self.proxy.requests)

    @property
    def faults(self) -> list[Fault]:
        return self.proxy.faults

    @property
    def latency(self) -> float:
        return self.proxy.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.proxy.latency = seconds

    def inject(self, **fault: Any) -> Fault:
        return self.proxy.inject(**fault)

    def agent_kubeconfig(self, path: Path, node: str) -> str:
        """The agent on ``node`` as its own ServiceAccount, through the proxy."""
        return self.plane.agent_kubeconfig(path, node, server=self.url)

    def count(self, **criteria: Any) -> int:
        return self.proxy.count(**criteria)

    def mark(self) -> int:
        return self.proxy.mark()

    def compact(self) -> None:
        """The next watch that resumes from a resourceVersion gets 410 Expired, as after etcd compaction
        (the real server's watch cache keeps a short history, so a test cannot force this itself)."""
        self.proxy.inject(verb="watch", expire=True)

    # --- state, as kubelet and other controllers change it ---------------------------------------

    def add_node(self, name: str, *, labels: dict[str, str] | None = None,
                 annotations: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None,
                 allocatable: dict[str, str] | None = None, ready: bool = True) -> dict[str, Any]:
        """A Node as kubelet registers it (there is no kubelet: its status is set here)."""
        resources = allocatable or {"cpu": "16", "memory": "64Gi", "pods": "110"}
        obj: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": dict(labels or {"kubernetes.io/hostname": name})},
            "spec": {},
            "status": {"conditions": [_ready_condition(ready)], "capacity": dict(resources),
                       "allocatable": dict(resources)},
        }
        if annotations:
            obj["metadata"]["annotations"] = dict(annotations)
        if taints:
            obj["spec"]["taints"] = list(taints)
        created = self.admin.create("/api/v1/nodes", obj)
        return lift_not_ready_taint(self.admin, created, keep=taints) if ready else created

    def node(self, name: str) -> dict[str, Any]:
        return self.admin.get(f"/api/v1/nodes/{quote(name)}")

    def mutate_node(self, name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Change a Node as another controller would (read, change, write with its resourceVersion)."""
        for _ in range(10):
            obj = self.node(name)
            change(obj)
            try:
                return self.admin.request("PUT", f"/api/v1/nodes/{quote(name)}", obj)
            except KubeError as error:
                if error.status != 409:
                    raise
        raise AssertionError(f"could not update node {name}: 10 conflicts")

    def heartbeat(self, name: str) -> dict[str, Any]:
        """kubelet's status update: a MODIFIED event for watchers, labels untouched."""
        return self.admin.patch(f"/api/v1/nodes/{quote(name)}/status",
                                {"status": {"conditions": [_ready_condition(True)]}}, "strategic-merge")

    def delete_node(self, name: str) -> None:
        self.admin.delete(f"/api/v1/nodes/{quote(name)}")

    def node_writes_after(self, name: str, resource_version: str) -> list[dict[str, Any]]:
        """The Node as each write after ``resource_version`` left it, in order (a watch from there)."""
        events = self.admin.watch_lines("/api/v1/nodes", 1, resourceVersion=resource_version,
                                        fieldSelector=f"metadata.name={name}")
        return [e["object"] for e in events if e["type"] in ("ADDED", "MODIFIED", "DELETED")]

    def add_node_feature(self, node: str, *, namespace: str = NFD_NAMESPACE) -> dict[str, Any]:
        """A NodeFeature object as nfd-worker writes one for ``node`` (the NFD CRD must be installed:
        :meth:`ControlPlane.install_nfd_crd`)."""
        return self.admin.create(f"/apis/nfd.k8s-sigs.io/v1alpha1/namespaces/{namespace}/nodefeatures", {
            "apiVersion": "nfd.k8s-sigs.io/v1alpha1", "kind": "NodeFeature",
            "metadata": {"name": node, "labels": {"nfd.node.kubernetes.io/node-name": node}},
            "spec": {"features": {}, "labels": {}}})

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every Event about a Node, in the order they were created (the scheduler's own Events, about
        its lease and pods, are not the agent's business)."""
        items = [e for e in self.admin.get("/api/v1/events")["items"] if e["involvedObject"].get("kind") == "Node"]
        return sorted(items, key=lambda e: int(e["metadata"]["resourceVersion"]))

    @property
    def crd_installed(self) -> bool:
        return self.plane.crd_installed()

    @crd_installed.setter
    def crd_installed(self, installed: bool) -> None:
        if installed:
            self.plane.install_crd()
        else:
            self.plane.remove_crd()


NOT_READY_TAINT = "node.kubernetes.io/not-ready"


def lift_not_ready_taint(admin: Admin, node: dict[str, Any],
                         keep: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What the node lifecycle controller does for a Ready node: the API server's TaintNodesByCondition
    admission puts ``node.kubernetes.io/not-ready:NoSchedule`` on every new Node, and no
    kube-controller-manager runs here to lift it."""
    if any(t.get("key") == NOT_READY_TAINT for t in keep or []):
        return node
    path = f"/api/v1/nodes/{quote(node['metadata']['name'])}"
    for _ in range(10):  # an agent already watching may write the new Node first: re-read, as a controller does
        taints = node["spec"].get("taints") or []
        left = [t for t in taints if t.get("key") != NOT_READY_TAINT]
        if left == taints:
            return node
        body = {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]}, "spec": {"taints": left or None}}
        try:
            return admin.patch(path, body)  # type: ignore[no-any-return]
        except KubeError as exc:
            if exc.status != 409:
                raise
            node = admin.get(path)
    raise KubeError(409, f"{path}: the not-ready taint could not be lifted after 10 conflicts")


def _ready_condition(ready: bool) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady" if ready else
            "KubeletNotReady", "message": "set by the test", "lastHeartbeatTime": now, "lastTransitionTime": now}


def session_control_plane(base: Path) -> ControlPlane:
    """Bring one control plane up under ``base`` (the caller takes it down)."""
    plane = ControlPlane(base)
    plane.up()
    try:
        plane.install_shipped()
    except BaseException:
        plane.down()
        raise
    return plane


@contextlib.contextmanager
def running(base: Path | None = None) -> Iterator[ApiServer]:
    """A control plane and a proxy for a bench or a script (tests use the session fixture instead)."""
    with tempfile.TemporaryDirectory(prefix="nodeagent-k8s-") as tmp:
        plane = session_control_plane(base or Path(tmp))
        try:
            pki = plane.pki
            with FaultProxy(plane.server, ca=pki / "ca.crt", cert=pki / "apiserver.crt",
                            key=pki / "apiserver.key") as proxy:
                yield ApiServer(plane, proxy)
        finally:
            plane.down()
