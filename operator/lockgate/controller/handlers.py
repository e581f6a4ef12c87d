"""kopf registrations: indexes that mirror what the operator watches, and events that trigger a reconcile.

kopf runs no handler until every index has its initial listing, so after a restart the
operator never decides from a half-filled view of Jobs, pods or workloads.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from .allocator import Trimmer
from .kube import API_CALLS_IN_FLIGHT, KubeApi
from .observed import Observed, job_pod_view, job_view, pod_view, workload_view
from .pod_security import Level
from .reconciler import Key, Reconciler
from .spec import (
    GROUP,
    OWNER_ANNOTATION,
    OWNER_LABEL,
    PLURAL,
    SCHEMA_LABEL,
    VERSION,
    migration_fields,
    parse_migration,
)

log = logging.getLogger("lockgate.operator")
WORKLOADS = (("apps", "v1", "deployments"), ("apps", "v1", "statefulsets"), ("apps", "v1", "daemonsets"))
WORKLOAD_INDEXES = tuple(f"workload_idx_{plural}" for _, _, plural in WORKLOADS)
INDEXES = ("migration_idx", "job_idx", "job_pod_idx", "gated_pod_idx", *WORKLOAD_INDEXES)


class Operator:
    """The live indexes (bound on the first handler call) and the reconciler that reads them."""

    def __init__(self) -> None:
        self.indexes: dict[str, kopf.Index[Any, Any]] = {}
        self.reconciler: Reconciler | None = None
        self.pod_security = Level.RESTRICTED  # set by run_operator before kopf starts
        self.trimmer = Trimmer()

    def trigger(self, key: Key, kwargs: Mapping[str, Any]) -> None:
        self.trimmer.poke()
        if self.reconciler is None:
            self.indexes = {name: kwargs[name] for name in INDEXES}
            self.reconciler = Reconciler(KubeApi(), self.observe, self.pod_security)
        self.reconciler.request(key)

    def observe(self, key: Key) -> Observed:
        namespace, name = key
        texts = _values(self.indexes["migration_idx"], key)
        return Observed(
            migration=parse_migration(json.loads(texts[0]), self.pod_security) if texts else None,
            namespace=namespace,
            name=name,
            jobs=tuple(_values(self.indexes["job_idx"], key)),
            job_pods=tuple(_values(self.indexes["job_pod_idx"], key)),
            workloads=tuple(w for index in WORKLOAD_INDEXES for w in _values(self.indexes[index], key)),
            pods=tuple(_values(self.indexes["gated_pod_idx"], key)),
        )


OPERATOR = Operator()


def _values(index: kopf.Index[Any, Any], key: Key) -> list[Any]:
    store = index.get(key)
    return list(store) if store is not None else []


def _template_label(spec: Mapping[str, Any]) -> str | None:
    labels: Mapping[str, str] = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    return labels.get(SCHEMA_LABEL)


def _owner(labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
    """The SchemaMigration a Job or Job pod belongs to: its full name is in the annotation (the label
    may be cut to fit); Jobs made before lockgate set the annotation have only the label."""
    return annotations.get(OWNER_ANNOTATION) or labels[OWNER_LABEL]


def _key(namespace: str | None, name: str | None) -> Key:
    """Everything lockgate watches is namespaced, and the handlers' filters guarantee the name."""
    assert namespace is not None and name is not None
    return namespace, name


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # The reconciler's API calls run in the loop's default executor (asyncio.to_thread).
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(API_CALLS_IN_FLIGHT, "lockgate-api"))
    settings.posting.enabled = False  # lockgate posts its own, step-by-step Events
    # kopf would list CRDs (and namespaces) cluster-wide at start; least-privilege RBAC forbids
    # that, and the resources lockgate watches are fixed: the CRD is installed before it runs.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10]
    # Only lockgate's Jobs, selected by the API server: kopf filters handlers' labels itself, so
    # without this every Job of the cluster would be streamed in. (Pods cannot be: a selector
    # cannot say "this label or that one", and Job pods and gated pods carry different ones.)
    settings.watching.label_selectors["batch", "v1", "jobs"] = OWNER_LABEL


# indexes


@kopf.index(GROUP, VERSION, PLURAL)
async def migration_idx(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, str]:
    # As JSON text: about a third of the memory the same fields take as dicts; parsed once a pass.
    return {_key(namespace, name): json.dumps(migration_fields(body), separators=(",", ":"))}


@kopf.index("batch", "v1", "jobs", labels={OWNER_LABEL: kopf.PRESENT})
async def job_idx(
    namespace: str | None, labels: kopf.Labels, annotations: kopf.Annotations, body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    return {_key(namespace, _owner(labels, annotations)): job_view(body)}


@kopf.index("", "v1", "pods", labels={OWNER_LABEL: kopf.PRESENT})
async def job_pod_idx(
    namespace: str | None, labels: kopf.Labels, annotations: kopf.Annotations, body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    return {_key(namespace, _owner(labels, annotations)): job_pod_view(body)}


@kopf.index("", "v1", "pods", labels={SCHEMA_LABEL: kopf.PRESENT})
async def gated_pod_idx(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {_key(namespace, labels[SCHEMA_LABEL]): pod_view(body)}


async def _index_workload(namespace: str | None, spec: kopf.Spec, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {_key(namespace, _template_label(spec)): workload_view(body)}


def _has_schema_label(spec: kopf.Spec, **_: Any) -> bool:
    return _template_label(spec) is not None


# triggers


@kopf.on.event(GROUP, VERSION, PLURAL)
async def on_migration(namespace: str | None, name: str, **kwargs: Any) -> None:
    OPERATOR.trigger(_key(namespace, name), kwargs)


@kopf.on.event("batch", "v1", "jobs", labels={OWNER_LABEL: kopf.PRESENT})
@kopf.on.event("", "v1", "pods", labels={OWNER_LABEL: kopf.PRESENT})
async def on_job_or_job_pod(
    namespace: str | None, labels: kopf.Labels, annotations: kopf.Annotations, **kwargs: Any
) -> None:
    OPERATOR.trigger(_key(namespace, _owner(labels, annotations)), kwargs)


@kopf.on.event("", "v1", "pods", labels={SCHEMA_LABEL: kopf.PRESENT})
async def on_gated_pod(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    OPERATOR.trigger(_key(namespace, labels[SCHEMA_LABEL]), kwargs)


async def _on_workload(namespace: str | None, spec: kopf.Spec, **kwargs: Any) -> None:
    OPERATOR.trigger(_key(namespace, _template_label(spec)), kwargs)


for _group, _version, _plural in WORKLOADS:
    kopf.index(_group, _version, _plural, when=_has_schema_label, id=f"workload_idx_{_plural}")(_index_workload)
    kopf.on.event(_group, _version, _plural, when=_has_schema_label, id=f"on_{_plural}")(_on_workload)
