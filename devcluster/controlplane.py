"""etcd, kube-apiserver, kube-controller-manager and kube-scheduler on free ports, with TLS
everywhere, RBAC and service-account tokens. The API server listens on the node's address,
which pods reach through the `kubernetes` Service; everything else stays on loopback."""

from __future__ import annotations

import contextlib
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from devcluster.kubeconfig import write_kubeconfig
from devcluster.pki import CertKey, ClusterPKI, create_pki
from devcluster.postgres import free_port
from devcluster.processes import ManagedProcess, wait_until_ready

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.96.0.0/16"  # ClusterIPs: kube-proxy's iptables rules make them reachable
START_TIMEOUT = 90.0
# What the API server's audit log records (--audit-policy-file), for tests that prove from outside
# how a client reads Secrets: get, list and watch of Secrets by a service account outside
# kube-system, request and response, and nothing else, so the log stays small and holds only that
# (rules match in order: the first that fits decides).
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: RequestResponse
    userGroups: ["system:serviceaccounts"]
    verbs: [get, list, watch]
    resources: [{group: "", resources: [secrets]}]
  - level: None
"""


def client_context(ca: Path, client: CertKey | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if client:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def url_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    """A health endpoint answers 200 (http, or https with `context`)."""
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
        return False


class ControlPlane:
    def __init__(self, directory: Path, bin_dir: Path, node_name: str, node_ip: str) -> None:
        self.directory = directory
        self.bin_dir = bin_dir
        self.node_name = node_name
        self.node_ip = node_ip
        self.api_port = free_port()
        # Pods reach the API server through the `kubernetes` Service, whose endpoint is this address:
        # 127.0.0.1 would be each pod's own loopback.
        self.server = f"https://{node_ip}:{self.api_port}"
        self._cm_port = free_port()
        self._scheduler_port = free_port()
        self.kubeconfig = directory / "kubeconfig"
        self.audit_log = directory / "logs" / "audit.log"  # JSON lines, one event a request (AUDIT_POLICY)
        self.processes: list[ManagedProcess] = []
        self.pki: ClusterPKI | None = None
        self._ready: dict[str, Callable[[], bool]] = {}  # etcd and kube-apiserver: their health checks

    def start(self) -> ControlPlane:
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.directory / "etcd", ignore_errors=True)  # a reused directory starts a fresh cluster
        pki = self.pki = create_pki(self.directory / "pki", self.node_name, self.node_ip)
        self._start_etcd_and_apiserver(pki)
        write_kubeconfig(self.kubeconfig, self.server, pki.ca.cert, pki.admin, "admin")
        # Both only talk to the API server, so they start side by side.
        controller_manager = self._launch("kube-controller-manager", self._controller_manager_args(pki))
        scheduler = self._launch("kube-scheduler", self._scheduler_args(pki))
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = (
            False,
            ssl.CERT_NONE,
        )  # self-signed serving certificates; loopback only
        for process, port in ((controller_manager, self._cm_port), (scheduler, self._scheduler_port)):
            wait_until_ready(process, lambda p=port: url_ok(f"https://127.0.0.1:{p}/healthz", insecure), START_TIMEOUT)
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def _start_etcd_and_apiserver(self, pki: ClusterPKI) -> None:
        etcd_port, peer_port = free_port(), free_port()
        etcd = self._launch("etcd", self._etcd_args(pki, etcd_port, peer_port))
        etcd_context = client_context(pki.ca.cert, pki.apiserver_etcd_client)
        self._ready["etcd"] = lambda: url_ok(f"https://127.0.0.1:{etcd_port}/health", etcd_context)
        wait_until_ready(etcd, self._ready["etcd"], START_TIMEOUT)
        (self.directory / "audit-policy.yaml").write_text(AUDIT_POLICY)
        apiserver = self._launch("kube-apiserver", self._apiserver_args(pki, etcd_port))
        admin_context = client_context(pki.ca.cert, pki.admin)
        self._ready["kube-apiserver"] = lambda: url_ok(f"{self.server}/readyz", admin_context)
        wait_until_ready(apiserver, self._ready["kube-apiserver"], START_TIMEOUT)

    @contextlib.contextmanager
    def outage(self, name: str) -> Iterator[None]:
        """A real outage, for tests: `name` ("etcd" or "kube-apiserver") is stopped (SIGTERM) for the
        body of the `with`, then started again with the same flags, data directory and port; the
        outage ends once etcd and the API server both report healthy again."""
        process = next(p for p in self.processes if p.name == name and name in self._ready)
        process.stop()
        try:
            yield
        finally:
            process.start()
            for component in ("etcd", "kube-apiserver"):
                wait_until_ready(process, self._ready[component], START_TIMEOUT)

    def _launch(self, name: str, args: list[str]) -> ManagedProcess:
        process = ManagedProcess(
            name, [str(self.bin_dir / name), *args], self.directory / "logs" / f"{name}.log", die_with_parent=True
        )
        self.processes.append(process.start())
        return process

    def _etcd_args(self, pki: ClusterPKI, port: int, peer_port: int) -> list[str]:
        peer = f"http://127.0.0.1:{peer_port}"  # a single member: the peer port only ever hears itself
        return [
            "--name=lockgate-test",
            f"--data-dir={self.directory / 'etcd'}",
            f"--listen-client-urls=https://127.0.0.1:{port}",
            f"--advertise-client-urls=https://127.0.0.1:{port}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=lockgate-test={peer}",
            f"--cert-file={pki.etcd.cert}",
            f"--key-file={pki.etcd.key}",
            f"--trusted-ca-file={pki.ca.cert}",
            "--client-cert-auth=true",
            "--unsafe-no-fsync=true",  # throwaway data: durability only costs time
            "--log-level=warn",
        ]

    def _apiserver_args(self, pki: ClusterPKI, etcd_port: int) -> list[str]:
        return [
            f"--etcd-servers=https://127.0.0.1:{etcd_port}",
            f"--etcd-cafile={pki.ca.cert}",
            f"--etcd-certfile={pki.apiserver_etcd_client.cert}",
            f"--etcd-keyfile={pki.apiserver_etcd_client.key}",
            f"--bind-address={self.node_ip}",
            f"--advertise-address={self.node_ip}",
            f"--secure-port={self.api_port}",
            f"--tls-cert-file={pki.apiserver.cert}",
            f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # pods/log and exec go to the kubelet on the node's InternalIP.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-certificate-authority={pki.ca.cert}",
            f"--kubelet-client-certificate={pki.apiserver_kubelet_client.cert}",
            f"--kubelet-client-key={pki.apiserver_kubelet_client.key}",
            "--profiling=false",
            f"--audit-policy-file={self.directory / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",  # written as each request ends, not buffered: a test reads it at once
            "--audit-log-maxsize=0",  # no rotation: the log is small and goes with the cluster's directory
        ]

    def _served_component_args(self, name: str, client: CertKey, user: str, port: int) -> list[str]:
        """Flags shared by the controller manager and the scheduler: identity, health endpoint, no election."""
        assert self.pki is not None
        config = write_kubeconfig(self.directory / f"{name}.kubeconfig", self.server, self.pki.ca.cert, client, user)
        return [
            f"--kubeconfig={config}",
            f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.directory / name}",
            "--leader-elect=false",
            "--profiling=false",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
        ]

    def _controller_manager_args(self, pki: ClusterPKI) -> list[str]:
        return [
            *self._served_component_args(
                "controller-manager", pki.controller_manager, "system:kube-controller-manager", self._cm_port
            ),
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca.cert}",
            f"--cluster-signing-cert-file={pki.ca.cert}",
            f"--cluster-signing-key-file={pki.ca.key}",
        ]

    def _scheduler_args(self, pki: ClusterPKI) -> list[str]:
        return self._served_component_args(
            "kube-scheduler", pki.scheduler, "system:kube-scheduler", self._scheduler_port
        )
