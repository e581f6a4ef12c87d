"""`lockgate wait`: the schema gate as an init container, for apps that must not even start early.

It watches one SchemaMigration until its expanded version reaches the one required, within
a bounded timeout. The pod's ServiceAccount needs get/list/watch on schemamigrations.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from ..controller.conditions import find
from ..controller.kube_client import custom_object, load_config
from ..controller.spec import GROUP, PLURAL, TERMINATION_LOG, VERSION
from ..shared.errors import UsageError
from ..shared.versions import Version

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def verdict(body: dict[str, Any] | None, required: Version) -> tuple[bool, str]:
    """Whether the gate is open for `required`, and a sentence saying why or why not (pure)."""
    if body is None:
        return False, "the SchemaMigration does not exist (yet)"
    status = body.get("status") or {}
    applied = status.get("appliedVersion")
    if applied and Version.parse(applied) >= required:
        return True, f"schema {applied} is expanded (required {required})"
    stalled = find(status.get("conditions") or [], "Stalled")
    problem = f"; stalled: {stalled.get('message')}" if stalled and stalled.get("status") == "True" else ""
    return (
        False,
        f"schema expanded to {applied or 'nothing yet'}, phase {status.get('phase') or 'Pending'}, required {required}{problem}",
    )


def wait_for_schema(
    namespace: str | None, name: str, required: Version, timeout: float, say: Callable[[str], None]
) -> int:
    namespace = namespace or _own_namespace()
    load_config()
    api = client.CustomObjectsApi()
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        body, resource_version = _get(api, namespace, name)
        done, message = verdict(body, required)
        if message != last:
            say(f"{namespace}/{name}: {message}")
            last = message
        if done:
            return 0
        _wait_for_change(api, namespace, name, resource_version, deadline)
    message = f"timed out after {timeout:g}s waiting for SchemaMigration {namespace}/{name} to expand schema {required}: {last}"
    say(message)
    _leave_termination_message(message)
    return 1


def _leave_termination_message(message: str) -> None:
    """Show the reason in `kubectl describe pod` when running as an init container."""
    path = Path(TERMINATION_LOG)
    if path.exists() and os.access(path, os.W_OK):
        path.write_text(message[:4000])


def _own_namespace() -> str:
    if NAMESPACE_FILE.exists():
        return NAMESPACE_FILE.read_text().strip()
    raise UsageError("no namespace: pass --namespace or set POD_NAMESPACE")


def _get(api: client.CustomObjectsApi, namespace: str, name: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        body = custom_object(api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
        return body, body["metadata"]["resourceVersion"]
    except ApiException as exc:
        if exc.status == 404:
            return None, None
        if exc.status in (401, 403):
            raise UsageError(
                f"not allowed to read SchemaMigration {namespace}/{name}: grant the pod's ServiceAccount get/list/watch on schemamigrations.lockgate.dev"
            ) from None
        raise


def _wait_for_change(
    api: client.CustomObjectsApi, namespace: str, name: str, resource_version: str | None, deadline: float
) -> None:
    """Block until the object changes (a watch event) or the deadline; no busy polling."""
    remaining = max(1, int(deadline - time.monotonic()))
    stream = watch.Watch().stream(  # type: ignore[no-untyped-call]  # unannotated in the client
        api.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        field_selector=f"metadata.name={name}",
        resource_version=resource_version,
        timeout_seconds=min(remaining, 60),
    )
    try:
        for _ in stream:
            return
    except ApiException as exc:
        if exc.status != 410:  # an expired resourceVersion just means: read again
            raise
