"""The Node objects and Leases the node agent reports, as pure functions of name, port and time."""

from __future__ import annotations

import platform
from datetime import datetime, timezone

from tests.cluster.podstatus import rfc3339

KUBE_VERSION = "v1.35.4"
LEASE_SECONDS = 40
CAPACITY = {"cpu": "32", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def node_manifest(name: str) -> dict:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": ARCH,
        "lockgate.dev/test-node": "true",
    }
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": {}}


_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID"),
    ("Ready", "True", "KubeletReady"),
)


def node_heartbeat(now: float) -> dict:
    """A status patch that only moves lastHeartbeatTime (conditions merge by type, so their transition times stay)."""
    conditions = [{"type": t, "status": s, "reason": r, "lastHeartbeatTime": rfc3339(now)} for t, s, r in _CONDITIONS]
    return {"status": {"conditions": conditions}}


def node_status(kubelet_port: int, now: float) -> dict:
    """The full status the node registers with."""
    heartbeat = node_heartbeat(now)["status"]["conditions"]
    return {
        "status": {
            "capacity": CAPACITY,
            "allocatable": CAPACITY,
            "conditions": [{**c, "lastTransitionTime": rfc3339(now)} for c in heartbeat],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "lockgate test node",
                "containerRuntimeVersion": "lockgate-nodeagent://0.1",
                "kubeletVersion": KUBE_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": ARCH,
            },
        }
    }


def micro_time(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_manifest(node: str, node_uid: str, now: float) -> dict:
    """The heartbeat the node lifecycle controller reads; owned by the Node, as the kubelet does it."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}],
        },
        "spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": micro_time(now)},
    }


def node_is_ready(node: dict) -> bool:
    """Ready, and the node lifecycle controller has lifted the not-ready taint: pods can land on it."""
    conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions") or []}
    tainted = any(t["key"] == "node.kubernetes.io/not-ready" for t in node.get("spec", {}).get("taints") or [])
    return conditions.get("Ready") == "True" and not tainted
