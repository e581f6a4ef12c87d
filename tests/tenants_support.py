"""Many tenants on the real node, the pieces their tests share: a database per tenant behind its
Secret, a SchemaMigration over those Secrets (no spec.database), a Job's pods by index, and the
one fault no API call makes: SIGKILL to a Job pod's runner, sent from the host."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devcluster.clusters import LocalCluster
from devcluster.kube import Kube
from devcluster.postgres import in_cluster_url
from lockgate.controller.spec import GROUP, PLURAL, VERSION
from tests.operator_fixtures import Migrations

INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


def phase_is(phase: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: (body.get("status") or {}).get("phase") == phase


def summary_is(summary: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: ((body.get("status") or {}).get("targets") or {}).get("summary") == summary


def tenant_databases(postgres: Any, namespace: str, *tenants: str) -> dict[str, str]:
    """A new database per tenant: the Secret name (`tenant-<t>-db`) -> the database's URL from this host."""
    suffix = namespace[-6:].replace("-", "_")
    return {f"tenant-{t}-db": postgres.create_database(f"t_{t}_{suffix}") for t in tenants}


def tenant_secret(kube: Kube, namespace: str, name: str, url: str, node_ip: str) -> None:
    """The tenant's Secret, holding the URL pods use for `url` (key `url`)."""
    data = {"url": in_cluster_url(url, node_ip)}
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "stringData": data})


def create_over_databases(
    kube: Kube, migrations: Migrations, name: str, version: str, config_map: str, secrets: list[str], **spec: Any
) -> None:
    """A SchemaMigration whose targets are the databases behind `secrets`, and no spec.database."""
    body = migrations.body(name, version, config_map, targets={"databases": {"secrets": secrets}}, **spec)
    del body["spec"]["database"]
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, migrations.namespace, PLURAL, body)


def job_pods(kube: Kube, namespace: str, job: str) -> list[Any]:
    """The Job's pods, every attempt of every index, in index then creation order."""
    pods = kube.core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    return sorted(pods, key=lambda p: (int(p.metadata.labels[INDEX_LABEL]), p.metadata.creation_timestamp))


def running_pods(kube: Kube, namespace: str, job: str) -> list[Any]:
    return [
        p
        for p in job_pods(kube, namespace, job)
        if p.status.container_statuses and p.status.container_statuses[0].state.running
    ]


def kill_runner(cluster: Any, pod: Any) -> int:
    """SIGKILL the pod's runner (its container's first process) from the host, as the kernel's OOM
    killer or a crashing node would: no signal handler, no cleanup. Returns the host PID killed."""
    if not isinstance(cluster, LocalCluster):
        pytest.skip("killing a container's process needs the local node's containerd")
    container = pod.status.container_statuses[0].container_id.removeprefix("containerd://")
    ctr = [str(cluster.bin_dir / "ctr"), "--address", str(cluster.node.layout.containerd_socket)]
    tasks = subprocess.run([*ctr, "-n", "k8s.io", "task", "ls"], capture_output=True, text=True, check=True).stdout
    [pid] = [int(line.split()[1]) for line in tasks.splitlines()[1:] if line.split()[0] == container]
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert any(part.endswith(b"lockgate") for part in command), command  # the runner itself, PID 1 in the pod
    os.kill(pid, signal.SIGKILL)
    return pid
