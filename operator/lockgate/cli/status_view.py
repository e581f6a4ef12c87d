"""`lockgate status`: what a person needs at a glance about SchemaMigrations in the cluster."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from ..controller.conditions import find
from ..controller.kube_client import custom_object, load_config
from ..controller.spec import GROUP, PLURAL, VERSION


def render(body: dict[str, Any]) -> list[str]:
    """Lines describing one SchemaMigration (pure)."""
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    ready = find(status.get("conditions") or [], "Ready") or {}
    lines = [
        f"{meta['namespace']}/{meta['name']}: target {spec.get('version')}, applied {status.get('appliedVersion') or '-'}, "
        f"phase {status.get('phase') or 'Pending'}, ready {ready.get('status', 'Unknown')}",
    ]
    if ready.get("message"):
        lines.append(f"  {ready['message']}")
    gate = status.get("gate") or {}
    for w in gate.get("workloads") or []:
        state = "rolled out" if w.get("rolledOut") else "rolling out"
        lines.append(
            f"  {w['kind']}/{w['name']} requires {w.get('requiresVersion') or '-'}: {w.get('updated')}/{w.get('desired')} updated, {w.get('available')} available, {state}"
        )
    lines.append(f"  pods at the gate: {gate.get('podsWaiting', 0)} waiting, {gate.get('podsReady', 0)} passed")
    if progress := status.get("progress"):
        lines.append(
            f"  background {progress.get('script')}: {progress_bar(progress.get('percent'))} {progress.get('summary')}"
        )
    if targets := status.get("targets"):
        lines.append(f"  {targets.get('total')} {targets.get('kind')} targets: {targets.get('summary')}")
        lines += [f"    {f['target']} ({f['phase']}): {f['error']}" for f in targets.get("failed") or []]
    for entry in (status.get("history") or [])[-4:]:
        applied = f", {entry['applied']} applied" if entry.get("applied") is not None else ""
        lines.append(f"  {entry['phase']:<10} {entry['version']:<10} {entry['job']}: {entry['result']}{applied}")
        if entry.get("error"):
            lines.append(f"    error: {entry['error']}")
    stalled = find(status.get("conditions") or [], "Stalled")
    if stalled and stalled.get("status") == "True":
        lines.append(f"  STALLED: {stalled.get('message')}")
    return lines


def progress_bar(percent: float | None, width: int = 20) -> str:
    """[#########...........]; dots only where the total is unknown."""
    if percent is None:
        return "[" + "." * width + "]"
    done = round(width * min(100.0, max(0.0, percent)) / 100)
    return "[" + "#" * done + "." * (width - done) + "]"


def list_migrations(namespace: str | None, name: str | None) -> list[dict[str, Any]]:
    load_config()
    api = client.CustomObjectsApi()
    if name:
        return [custom_object(api.get_namespaced_custom_object(GROUP, VERSION, namespace or "default", PLURAL, name))]
    if namespace:
        found = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    else:
        found = api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    items: list[dict[str, Any]] = custom_object(found)["items"]
    return items
