"""The operator's Kubernetes API calls: each one small, synchronous, run in a worker thread."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..shared.timestamps import iso, parse_time
from .events import Event
from .gate import GatePatch
from .kube_client import custom_object
from .ledger import JobRef
from .manifests import CONTAINER
from .observed import WarningView
from .spec import GATE_CONDITION, GROUP, KIND, PLURAL, RESULT_FINALIZER, VERSION

log = logging.getLogger("lockgate.kube")
CONFLICT, NOT_FOUND, INVALID = 409, 404, 422
LOG_TAIL_LINES = 20  # the runner writes a progress line every few seconds: the newest is near the end


def as_model(body: dict[str, Any]) -> Any:
    """The client takes a plain dict wherever its signature names a model class."""
    return body


def _when(event: dict[str, Any]) -> datetime:
    text = event.get("lastTimestamp") or event.get("eventTime")
    return parse_time(text) or datetime.min.replace(tzinfo=timezone.utc)


def read_json(response: Any) -> Any:
    """The JSON of a response asked for with _preload_content=False: the client builds no model
    objects (building a V1Pod costs milliseconds, which a thousand SchemaMigrations queue behind)."""
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()


class KubeApi:
    """The calls the operator makes, on one API client (a test passes its own)."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self.api = api_client or client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def get_migration(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return custom_object(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
        except ApiException as exc:
            if exc.status == NOT_FOUND:
                return None
            raise

    def write_status(
        self, namespace: str, name: str, resource_version: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch the status if the object is still at `resource_version`; None on a conflict."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": patch}
        try:
            written = self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, body, _preload_content=False
            )
            return custom_object(read_json(written))
        except ApiException as exc:
            if exc.status in (CONFLICT, NOT_FOUND):
                return None
            raise

    def create_job(self, manifest: dict[str, Any]) -> str | None:
        """Create the Job; if it exists already, adopt it. Returns the existing Job's owner uid on a name clash."""
        try:
            read_json(
                self.batch.create_namespaced_job(
                    manifest["metadata"]["namespace"], as_model(manifest), _preload_content=False
                )
            )
            return None
        except ApiException as exc:
            if exc.status != CONFLICT:
                raise
        existing = self.batch.read_namespaced_job(manifest["metadata"]["name"], manifest["metadata"]["namespace"])
        owners = [o.uid for o in (existing.metadata and existing.metadata.owner_references) or [] if o.controller]
        return owners[0] if owners else ""

    def start_job(self, namespace: str, job: JobRef) -> None:
        """Unsuspend the Job only if it is still the object bound to the claim (same uid)."""
        self._set_suspend(namespace, job, False)

    def _set_suspend(self, namespace: str, job: JobRef, suspend: bool) -> None:
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/uid", "value": job.uid},
            {"op": "replace", "path": "/spec/suspend", "value": suspend},
        ]
        try:
            read_json(self.batch.patch_namespaced_job(job.name, namespace, patch, _preload_content=False))
        except ApiException as exc:
            if exc.status not in (NOT_FOUND, INVALID):  # gone, or another object of that name now: leave it
                raise

    def delete_job(self, namespace: str, job: JobRef) -> None:
        """Delete that very Job (uid precondition): never a newer one of the same name."""
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=job.uid), propagation_policy="Background"
        )
        try:
            read_json(self.batch.delete_namespaced_job(job.name, namespace, body=options, _preload_content=False))
        except ApiException as exc:
            if exc.status not in (NOT_FOUND, CONFLICT):
                raise

    def warnings(self, namespace: str, subjects: tuple[str, ...]) -> tuple[WarningView, ...]:
        """Warning Events about these Jobs and pods, newest first: selected by the API server, one
        call per subject, so the answer stays small however many Events the namespace holds."""
        events = [
            e
            for subject in subjects
            for e in read_json(
                self.core.list_namespaced_event(
                    namespace, field_selector=f"type=Warning,involvedObject.name={subject}", _preload_content=False
                )
            )["items"]
            if e["involvedObject"].get("kind") in ("Job", "Pod")
        ]
        ours = sorted(((_when(e), e) for e in events), key=lambda pair: pair[0], reverse=True)
        return tuple(
            WarningView(e["involvedObject"]["name"], e.get("reason") or "", e.get("message") or "", iso(when))
            for when, e in ours
        )

    def job_exists(self, namespace: str, name: str) -> bool:
        try:
            read_json(self.batch.read_namespaced_job(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == NOT_FOUND:
                return False
            raise
        return True

    def log_tail(self, namespace: str, pod: str) -> str:
        """The end of a migration pod's log, where the runner's newest progress line is."""
        return str(self.core.read_namespaced_pod_log(pod, namespace, container=CONTAINER, tail_lines=LOG_TAIL_LINES))

    def suspend_job(self, namespace: str, job: JobRef) -> None:
        """Suspend that very Job (uid test): its pod gets SIGTERM and the runner stops after its batch."""
        self._set_suspend(namespace, job, True)

    def patch_gate(self, namespace: str, patch: GatePatch) -> None:
        condition = {
            "type": GATE_CONDITION,
            "status": "True" if patch.ready else "False",
            "reason": patch.reason,
            "message": patch.message,
            "lastTransitionTime": iso(datetime.now(timezone.utc)),
        }
        try:
            read_json(
                self.core.patch_namespaced_pod_status(
                    patch.pod, namespace, {"status": {"conditions": [condition]}}, _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status != NOT_FOUND:  # a pod that is gone needs no gate
                raise

    def release_job(self, namespace: str, name: str) -> None:
        """Remove our finalizer with a test-and-remove JSON patch, so no other finalizer is touched."""
        for _ in range(3):
            try:
                job = read_json(self.batch.read_namespaced_job(name, namespace, _preload_content=False))
            except ApiException as exc:
                if exc.status == NOT_FOUND:
                    return
                raise
            finalizers = job["metadata"].get("finalizers") or []
            if RESULT_FINALIZER not in finalizers:
                return
            index = finalizers.index(RESULT_FINALIZER)
            path = f"/metadata/finalizers/{index}"
            try:
                patch = [{"op": "test", "path": path, "value": RESULT_FINALIZER}, {"op": "remove", "path": path}]
                read_json(self.batch.patch_namespaced_job(name, namespace, patch, _preload_content=False))
                return
            except ApiException as exc:
                if exc.status not in (CONFLICT, INVALID, NOT_FOUND):
                    raise

    def post_event(self, migration: dict[str, Any], event: Event) -> None:
        meta = migration["metadata"]
        now = iso(datetime.now(timezone.utc))
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": "lockgate"},
            "reportingComponent": "lockgate.dev/operator",
            "reportingInstance": "lockgate",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            read_json(self.core.create_namespaced_event(meta["namespace"], as_model(body), _preload_content=False))
        except ApiException as exc:
            log.warning(
                "could not post event %s on %s/%s: %s", event.reason, meta["namespace"], meta["name"], exc.reason
            )
