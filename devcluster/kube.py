"""API clients from the `kubernetes` package for a kubeconfig, and watch-based waiting."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException


@dataclass
class Kube:
    api: client.ApiClient
    core: client.CoreV1Api
    apps: client.AppsV1Api
    batch: client.BatchV1Api
    rbac: client.RbacAuthorizationV1Api
    custom: client.CustomObjectsApi
    apiextensions: client.ApiextensionsV1Api

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path) -> Kube:
        api = config.new_client_from_config(str(kubeconfig))
        return cls(
            api=api,
            core=client.CoreV1Api(api),
            apps=client.AppsV1Api(api),
            batch=client.BatchV1Api(api),
            rbac=client.RbacAuthorizationV1Api(api),
            custom=client.CustomObjectsApi(api),
            apiextensions=client.ApiextensionsV1Api(api),
        )

    def close(self) -> None:
        self.api.close()


def watch_until(
    list_function: Callable[..., Any], predicate: Callable[[Any], bool], timeout: float = 60, **kwargs: Any
) -> Any:
    """The first object (existing or changed) that satisfies `predicate`, from a watch on `list_function`
    (e.g. kube.batch.list_namespaced_job, namespace=ns, field_selector="metadata.name=x").
    Raises TimeoutError naming the last object seen."""
    deadline = time.monotonic() + timeout
    last = None
    while (remaining := deadline - time.monotonic()) > 0:
        w = watch.Watch()
        for event in w.stream(list_function, timeout_seconds=max(1, int(remaining)), **kwargs):
            if event["type"] == "DELETED":
                continue
            last = event["object"]
            if predicate(last):
                w.stop()
                return last
    raise TimeoutError(f"no {list_function.__name__} result matched within {timeout}s; last seen: {last}")


def wait_deleted(list_function: Callable[..., Any], name: str, timeout: float = 60, **kwargs: Any) -> None:
    """Return once the object called `name` no longer exists."""
    deadline = time.monotonic() + timeout
    selector = f"metadata.name={name}"
    while (remaining := deadline - time.monotonic()) > 0:
        listing = list_function(field_selector=selector, **kwargs)
        if not listing.items:
            return
        w = watch.Watch()
        for event in w.stream(
            list_function,
            field_selector=selector,
            resource_version=listing.metadata.resource_version,
            timeout_seconds=max(1, int(remaining)),
            **kwargs,
        ):
            if event["type"] == "DELETED":
                w.stop()
                return
    raise TimeoutError(f"{name} still exists after {timeout}s")


@contextmanager
def temporary_namespace(kube: Kube, name: str, labels: dict[str, str] | None = None) -> Iterator[str]:
    """A namespace ready for pods, deleted on exit (without waiting for its contents to go).
    Pods are refused until its default ServiceAccount exists, and cannot start before kube-root-ca.crt does."""
    kube.core.create_namespace({"metadata": {"name": name, "labels": {"lockgate.dev/test": "true", **(labels or {})}}})
    watch_until(
        kube.core.list_namespaced_service_account,
        lambda sa: True,
        namespace=name,
        field_selector="metadata.name=default",
    )
    watch_until(
        kube.core.list_namespaced_config_map,
        lambda cm: True,
        namespace=name,
        field_selector="metadata.name=kube-root-ca.crt",
    )
    try:
        yield name
    finally:
        try:
            kube.core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise


def deployment_rolled_out(deployment: Any) -> bool:
    """What `kubectl rollout status` waits for: every replica updated and available, none left over."""
    status, replicas = deployment.status, deployment.spec.replicas
    return (
        (status.observed_generation or 0) >= deployment.metadata.generation
        and (status.updated_replicas or 0) == replicas
        and (status.replicas or 0) == replicas
        and (status.available_replicas or 0) == replicas
    )
