"""The Kubernetes client's set-up, shared by the operator and the CLI's cluster commands: credentials,
custom objects as dicts, and what an API error means.

Apart from kube.py (the operator's calls), which loads the operator's whole vocabulary:
`lockgate wait` runs in every gated pod's start-up and needs only this.
"""

from __future__ import annotations

import json
from typing import Any, cast

import urllib3
from kubernetes import config
from kubernetes.client.exceptions import ApiException

from ..shared import redaction
from ..shared.errors import UsageError


def custom_object(obj: object) -> dict[str, Any]:
    """The client types custom objects (and lists of them) as `object`: they are JSON objects."""
    return cast(dict[str, Any], obj)


def load_config() -> None:
    """In-cluster credentials in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]  # unannotated in the client
    except config.ConfigException:
        try:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as exc:
            raise UsageError(f"no Kubernetes credentials: set KUBECONFIG or run in a pod ({exc})") from None


def describe_error(exc: Exception) -> str:
    """One line a person can act on: for API errors, the status and the server's message."""
    if isinstance(exc, ApiException):
        try:
            detail = json.loads(exc.body or "{}").get("message") or exc.reason
        except ValueError:
            detail = exc.reason
        return redaction.redact(f"{exc.status} {exc.reason}: {detail}")
    text = str(exc).strip().splitlines()
    return redaction.redact(f"{type(exc).__name__}: {text[0] if text else ''}")


def is_transient(exc: Exception) -> bool:
    """An outage rather than a refusal: no connection, a timeout, 429 or a 5xx from the API server."""
    if isinstance(exc, ApiException):
        return exc.status in (0, 429) or (exc.status or 0) >= 500
    return isinstance(exc, ConnectionError | TimeoutError | urllib3.exceptions.HTTPError)
