"""What the cluster benchmarks share: the local control plane and real node with one operator for
all namespaces (the test harness's pieces)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from devcluster.clusters import LocalCluster
from devcluster.kube import Kube, watch_until
from devcluster.processes import ManagedProcess
from devcluster.workloads import CRD, operator_command


@dataclass(frozen=True)
class Bench:
    cluster: LocalCluster
    kube: Kube
    operator: ManagedProcess


@contextmanager
def cluster_with_operator(directory: Path) -> Iterator[Bench]:
    """A local cluster with the CRD and one operator watching every namespace, as a cluster-wide
    install runs; all stopped on the way out."""
    cluster = LocalCluster(directory / "cluster").start()
    operator = None
    try:
        kube = Kube.from_kubeconfig(cluster.kubeconfig)
        kube.apiextensions.create_custom_resource_definition(yaml.safe_load(CRD.read_text()))
        operator = ManagedProcess(
            "operator",
            operator_command(None),
            directory / "operator.log",
            env={"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin"},
        ).start()
        time.sleep(2)
        yield Bench(cluster, kube, operator)
    finally:
        if operator:
            operator.stop()
        cluster.stop()


def create_namespace(kube: Kube, namespace: str) -> None:
    """A namespace whose default ServiceAccount exists: Jobs' pods can be created there."""
    kube.core.create_namespace({"metadata": {"name": namespace}})
    watch_until(
        kube.core.list_namespaced_service_account,
        lambda sa: True,
        namespace=namespace,
        field_selector="metadata.name=default",
    )
