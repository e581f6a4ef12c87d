"""`lockgate run`: the operator process."""

from __future__ import annotations

import logging

import kopf
from prometheus_client import start_http_server

from ..shared import redaction
from .allocator import limit_arenas
from .kube_client import load_config
from .pod_security import Level

log = logging.getLogger("lockgate.operator")


def run_operator(
    namespaces: list[str],
    health_port: int,
    metrics_port: int,
    log_format: str,
    verbose: bool,
    pod_security: Level = Level.RESTRICTED,
) -> int:
    limit_arenas()  # first: before any thread starts
    from . import handlers  # importing registers the kopf handlers

    handlers.OPERATOR.pod_security = pod_security

    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL)
    for handler in logging.getLogger().handlers:  # once, on the handlers kopf.configure just set up
        handler.addFilter(redaction.RedactingFilter())
    if not verbose:  # kopf logs every handler call at INFO; lockgate logs what it does instead
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    load_config()
    log.info("SchemaMigration pods may ask for what Pod Security level %s allows", pod_security)
    if metrics_port:
        start_http_server(metrics_port)
    kopf.run(
        standalone=True,  # correctness never rests on kopf peering: claims are guarded by resourceVersion
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz" if health_port else None,
    )
    return 0
