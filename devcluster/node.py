"""A real Kubernetes node on this host: containerd with runc and the CNI bridge, the kubelet and
kube-proxy, pulling its images from the cluster's registry (`devcluster.registry`).

The configuration files are pure functions of the node's layout; `Node` writes them and starts the
three daemons. Host-wide changes are undone by `devcluster.host`.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from devcluster.controlplane import url_ok
from devcluster.images.recipes import PAUSE_IMAGE
from devcluster.kubeconfig import write_kubeconfig
from devcluster.pki import ClusterPKI
from devcluster.postgres import free_port
from devcluster.processes import ComponentError, ManagedProcess, wait_until_ready
from devcluster.registry import hosts_toml

NODE_NAME = "lockgate-node"
POD_CIDR = "10.88.0.0/16"
BRIDGE = "lockgate0"
# Debian's containernetworking-plugins and runc.
CNI_BIN_DIR = Path("/usr/lib/cni")
RUNC = Path("/usr/sbin/runc")
START_TIMEOUT = 120.0
# The registries the images' refs name (docker.io/library/lockgate:dev, registry.k8s.io/pause):
# the node pulls them from the cluster's registry, as an air-gapped cluster from its mirror.
SERVED_REGISTRIES = ("docker.io", "registry.k8s.io")


@dataclass(frozen=True)
class NodeLayout:
    """Where one node keeps its state: everything under `root`, so `down` finds all of it."""

    root: Path

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def registry_hosts(self) -> Path:
        """containerd's config_path: one `HOST[:PORT]/hosts.toml` a registry (read at each pull)."""
        return self.root / "certs.d"


def node_ip(route_output: str, addresses_output: str) -> str:
    """The host address pods can reach: the source of the default route, else the first global IPv4.

    `route_output` is `ip -4 -o route get 192.0.2.255`'s, `addresses_output` `ip -4 -o addr show scope global`'s."""
    words = route_output.split()
    if "src" in words:
        return words[words.index("src") + 1]
    for line in addresses_output.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    raise ComponentError(
        "no global IPv4 address on this host: pods need one to reach the API server and PostgreSQL "
        "(add one, e.g. `ip link add lockgate-dummy type dummy && ip addr add 10.254.0.1/32 dev lockgate-dummy`)"
    )


def containerd_config(layout: NodeLayout) -> str:
    """containerd v2 (config version 3): every path under the node's root, so nothing lands in /var/lib."""
    state = layout.root / "containerd" / "state"
    return f"""version = 3
root = '{layout.root / "containerd" / "root"}'
state = '{state}'

[grpc]
  address = '{layout.containerd_socket}'

[plugins.'io.containerd.internal.v1.opt']
  path = '{layout.root / "containerd" / "opt"}'

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = '{PAUSE_IMAGE}'

[plugins.'io.containerd.cri.v1.images'.registry]
  config_path = '{layout.registry_hosts}'

[plugins.'io.containerd.cri.v1.runtime']
  # No CAP_SYS_RESOURCE on these machines: a container may not get a lower OOM score than ours.
  restrict_oom_score_adj = true
  # Pod network namespaces under our state directory, not /run/netns: `down` unmounts them with the rest.
  netns_mounts_under_state_dir = true
  enable_cdi = false

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = '{RUNC}'
  Root = '{state / "runc"}'
  # cgroup v1 only here, and no systemd: the kubelet's cgroupfs driver.
  SystemdCgroup = false

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ['{CNI_BIN_DIR}']
  conf_dir = '{layout.cni_conf_dir}'
"""


def cni_config(layout: NodeLayout) -> dict[str, object]:
    """A bridge with masquerade and hairpin (a pod reaching itself through its Service), host-local IPAM."""
    ipam = {
        "type": "host-local",
        "ranges": [[{"subnet": POD_CIDR}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": str(layout.root / "cni-ipam"),
    }
    return {
        "cniVersion": "1.0.0",
        "name": "lockgate",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True, "ipam": ipam},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


@dataclass(frozen=True)
class KubeletPorts:
    serving: int
    healthz: int


def kubelet_config(layout: NodeLayout, pki: ClusterPKI, ip: str, ports: KubeletPorts) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": ip,
        "port": ports.serving,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.healthz,
        "tlsCertFile": str(pki.kubelet_server.cert),
        "tlsPrivateKeyFile": str(pki.kubelet_server.key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki.ca.cert)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        # These machines have cgroup v1 only (which Kubernetes 1.35 refuses unless told) and no systemd.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        # Without CAP_SYS_RESOURCE the kubelet cannot give itself the usual -999.
        "oomScoreAdj": 0,
        "podLogsDir": str(layout.root / "pod-logs"),
        "failSwapOn": False,
        # Image garbage collection stays at its defaults (images come back from the registry);
        # a full development disk should not evict the tests' pods.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "serializeImagePulls": False,
    }


def kube_proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_CIDR,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        # Leave the host's conntrack table size and timeouts alone (0 = do not set).
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


def host_node_ip() -> str:
    route = subprocess.run(["ip", "-4", "-o", "route", "get", "192.0.2.255"], capture_output=True, text=True)
    addresses = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True)
    ip = node_ip(route.stdout, addresses.stdout)
    ipaddress.IPv4Address(ip)  # refuse anything that is not an address before it reaches a flag
    return ip


class Node:
    """containerd (pulling from `registry_url`), then the kubelet and kube-proxy; stopped in reverse."""

    def __init__(self, layout: NodeLayout, bin_dir: Path, ip: str, server: str, pki: ClusterPKI) -> None:
        self.layout = layout
        self.bin_dir = bin_dir
        self.ip = ip
        self.server = server
        self.pki = pki
        self.processes: list[ManagedProcess] = []

    def start(self, registry_host: str) -> Node:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        for served in (*SERVED_REGISTRIES, registry_host):
            self.trust_registry(served, f"http://{registry_host}")
        self._start_containerd()
        self._start_kubelet()
        self._start_kube_proxy()
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def _start_containerd(self) -> None:
        self.layout.containerd_config.write_text(containerd_config(self.layout))
        self.layout.cni_conf_dir.mkdir(exist_ok=True)
        (self.layout.cni_conf_dir / "10-lockgate.conflist").write_text(json.dumps(cni_config(self.layout), indent=1))
        containerd = self._launch("containerd", ["--config", str(self.layout.containerd_config)])
        wait_until_ready(containerd, lambda: self._ctr("version").returncode == 0, START_TIMEOUT)

    def trust_registry(self, host: str, server: str) -> None:
        """Pull images named `host/...` from `server` (plain HTTP): containerd reads this at each pull."""
        directory = self.layout.registry_hosts / host
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "hosts.toml").write_text(hosts_toml(server))

    def _ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / "ctr"), "--address", str(self.layout.containerd_socket), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=300)

    def _start_kubelet(self) -> None:
        ports = KubeletPorts(serving=free_port(), healthz=free_port())
        config = self.layout.root / "kubelet.yaml"
        config.write_text(yaml.safe_dump(kubelet_config(self.layout, self.pki, self.ip, ports)))
        kubeconfig = write_kubeconfig(
            self.layout.root / "kubelet.kubeconfig", self.server, self.pki.ca.cert, self.pki.kubelet_client, NODE_NAME
        )
        args = [
            f"--config={config}",
            f"--kubeconfig={kubeconfig}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={self.ip}",
            f"--root-dir={self.layout.kubelet_dir}",
            "--v=1",
        ]
        kubelet = self._launch("kubelet", args)
        wait_until_ready(kubelet, lambda: url_ok(f"http://127.0.0.1:{ports.healthz}/healthz"), START_TIMEOUT)

    def _start_kube_proxy(self) -> None:
        kubeconfig = write_kubeconfig(
            self.layout.root / "kube-proxy.kubeconfig", self.server, self.pki.ca.cert, self.pki.kube_proxy, "kube-proxy"
        )
        healthz = free_port()
        config = self.layout.root / "kube-proxy.yaml"
        config.write_text(yaml.safe_dump(kube_proxy_config(kubeconfig, healthz, free_port())))
        proxy = self._launch("kube-proxy", [f"--config={config}", "--v=1"])
        wait_until_ready(proxy, lambda: url_ok(f"http://127.0.0.1:{healthz}/healthz"), START_TIMEOUT)

    def _launch(self, name: str, args: list[str]) -> ManagedProcess:
        log = self.layout.root.parent / "logs" / f"{name}.log"
        process = ManagedProcess(name, [str(self.bin_dir / name), *args], log, die_with_parent=True)
        self.processes.append(process.start())
        return process


def node_is_ready(node: dict[str, object]) -> bool:
    """Ready, and the node lifecycle controller has lifted the not-ready taint: pods can land on it."""
    status = node.get("status") or {}
    spec = node.get("spec") or {}
    assert isinstance(status, dict) and isinstance(spec, dict)
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    tainted = any(t["key"] == "node.kubernetes.io/not-ready" for t in spec.get("taints") or [])
    return conditions.get("Ready") == "True" and not tainted
