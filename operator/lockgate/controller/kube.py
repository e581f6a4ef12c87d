"""The operator's Kubernetes API calls: each one small, synchronous, run in a worker thread."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any, cast
from urllib.parse import quote

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..shared.timestamps import iso, parse_time
from .events import Event
from .gate import GatePatch
from .ledger import JobRef
from .manifests import CONTAINER
from .observed import WarningView
from .spec import GATE_CONDITION, GROUP, KIND, PLURAL, RESULT_FINALIZER, VERSION

log = logging.getLogger("lockgate.kube")
CONFLICT, NOT_FOUND, INVALID = 409, 404, 422
# API calls in flight at once: the reconciler's worker threads, and the client's pooled
# connections (its default, 5 per CPU, would open and drop a connection per call beyond it).
# Each call mostly waits on the API server; with a thousand SchemaMigrations active, too few
# threads make every reconcile queue behind the others' calls.
API_CALLS_IN_FLIGHT = 32
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
LOG_TAIL_LINES = 20  # the runner writes a progress line every few seconds: the newest is near the end


def _when(event: dict[str, Any]) -> datetime:
    text = event.get("lastTimestamp") or event.get("eventTime")
    return parse_time(text) or datetime.min.replace(tzinfo=timezone.utc)


# Content types of the patches the operator sends (a JSON patch is a list of operations).
JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


def _pooled() -> client.Configuration:
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = API_CALLS_IN_FLIGHT
    return configuration


def _jobs(namespace: str, name: str = "") -> str:
    return f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs" + (f"/{quote(name)}" if name else "")


def _core(namespace: str, plural: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{quote(namespace)}/{plural}" + (f"/{quote(name)}" if name else "")


def _migration(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}/{quote(name)}"


class KubeApi:
    """The calls the operator makes, on one API client (a test passes its own).

    Plain REST calls whose answers are read as JSON: the client's generated API classes cost
    about 23 MiB of memory once imported (CoreV1Api alone 15), and building their model
    objects from an answer (a V1Pod, a V1Job) costs milliseconds of CPU under the GIL, which a
    thousand active SchemaMigrations queue behind."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self.api = api_client or client.ApiClient(_pooled())

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        patch: str = "",
        accept: str = "application/json",
    ) -> bytes:
        """One request; a status other than 2xx raises ApiException, as the generated client does."""
        headers = {"Accept": accept, **({"Content-Type": patch or "application/json"} if body else {})}
        request = self.api.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self.api.call_api(*request)
        data = response.read()  # type: ignore[no-untyped-call]  # unannotated in the client
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return cast(bytes, data)

    def _json(self, method: str, path: str, body: Any = None, **options: Any) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self._call(method, path, body, **options)))

    def get_migration(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._json("GET", _migration(namespace, name))
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
            return self._json("PATCH", f"{_migration(namespace, name)}/status", body, patch=MERGE_PATCH)
        except ApiException as exc:
            if exc.status in (CONFLICT, NOT_FOUND):
                return None
            raise

    def create_job(self, manifest: dict[str, Any]) -> str | None:
        """Create the Job; if it exists already, adopt it. Returns the existing Job's owner uid on a name clash."""
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            self._call("POST", _jobs(namespace), manifest)
            return None
        except ApiException as exc:
            if exc.status != CONFLICT:
                raise
        existing = self._json("GET", _jobs(namespace, name))
        owners = [o["uid"] for o in existing["metadata"].get("ownerReferences") or [] if o.get("controller")]
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
            self._call("PATCH", _jobs(namespace, job.name), patch, patch=JSON_PATCH)
        except ApiException as exc:
            if exc.status not in (NOT_FOUND, INVALID):  # gone, or another object of that name now: leave it
                raise

    def delete_job(self, namespace: str, job: JobRef) -> None:
        """Delete that very Job (uid precondition): never a newer one of the same name."""
        options = {"preconditions": {"uid": job.uid}, "propagationPolicy": "Background"}
        try:
            self._call("DELETE", _jobs(namespace, job.name), options)
        except ApiException as exc:
            if exc.status not in (NOT_FOUND, CONFLICT):
                raise

    def warnings(self, namespace: str, subjects: tuple[str, ...]) -> tuple[WarningView, ...]:
        """Warning Events about these Jobs and pods, newest first: selected by the API server, one
        call per subject, so the answer stays small however many Events the namespace holds."""
        events = [
            e
            for subject in subjects
            for e in self._json(
                "GET",
                _core(namespace, "events"),
                query=[("fieldSelector", f"type=Warning,involvedObject.name={subject}")],
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
            self._call("GET", _jobs(namespace, name))
        except ApiException as exc:
            if exc.status == NOT_FOUND:
                return False
            raise
        return True

    def secret_names(self, namespace: str, selector: str) -> tuple[str, ...]:
        """The names of the Secrets that match a label selector: their metadata only (the API server
        sends no data in a PartialObjectMetadataList), for spec.targets.databases.selector."""
        query = [("labelSelector", selector)]
        found = self._json("GET", _core(namespace, "secrets"), query=query, accept=METADATA_ONLY)
        return tuple(item["metadata"]["name"] for item in found.get("items") or [])

    def log_tail(self, namespace: str, pod: str) -> str:
        """The end of a migration pod's log, where the runner's newest progress line is."""
        query = [("container", CONTAINER), ("tailLines", str(LOG_TAIL_LINES))]
        return self._call("GET", f"{_core(namespace, 'pods', pod)}/log", query=query).decode(errors="replace")

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
        body = {"status": {"conditions": [condition]}}  # a strategic merge: conditions merge by type
        try:
            self._call("PATCH", f"{_core(namespace, 'pods', patch.pod)}/status", body, patch=STRATEGIC_PATCH)
        except ApiException as exc:
            if exc.status != NOT_FOUND:  # a pod that is gone needs no gate
                raise

    def release_job(self, namespace: str, name: str) -> None:
        """Remove our finalizer with a test-and-remove JSON patch, so no other finalizer is touched."""
        for _ in range(3):
            try:
                job = self._json("GET", _jobs(namespace, name))
            except ApiException as exc:
                if exc.status == NOT_FOUND:
                    return
                raise
            finalizers = job["metadata"].get("finalizers") or []
            if RESULT_FINALIZER not in finalizers:
                return
            path = f"/metadata/finalizers/{finalizers.index(RESULT_FINALIZER)}"
            patch = [{"op": "test", "path": path, "value": RESULT_FINALIZER}, {"op": "remove", "path": path}]
            try:
                self._call("PATCH", _jobs(namespace, name), patch, patch=JSON_PATCH)
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
            self._call("POST", _core(meta["namespace"], "events"), body)
        except ApiException as exc:
            log.warning(
                "could not post event %s on %s/%s: %s", event.reason, meta["namespace"], meta["name"], exc.reason
            )
