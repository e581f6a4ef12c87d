"""Benchmark without a cluster: the Python memory the operator keeps per watched object.

Builds --many SchemaMigrations (Ready), their expand Jobs (Complete) and Job pods (Succeeded),
shaped as the API server sends them (managedFields included), feeds each as an event of the
initial listing through kopf's own per-event processing with lockgate's handlers registered
(the reconciler replaced by one that only counts requests: no API calls), and prints what
stays allocated afterwards, by tracemalloc: in all, per kind, and the lines that hold the most.

It drives kopf's internal `process_resource_event` (kopf._core), so a kopf upgrade may need
it adjusted. Run with `.venv/bin/python benchmarks/operator_cache.py [--many 1000] [--top 12]`.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import tracemalloc
import uuid
from typing import Any

from kopf._cogs.configs.configuration import OperatorSettings
from kopf._cogs.structs.ephemera import AnyMemo, Memo
from kopf._cogs.structs.references import Resource
from kopf._core.actions.lifecycles import get_default_lifecycle
from kopf._core.engines.indexing import OperatorIndexers
from kopf._core.intents.registries import get_default_registry
from kopf._core.reactor.inventory import ResourceMemories
from kopf._core.reactor.processing import process_resource_event

from lockgate.controller import handlers
from lockgate.controller.ledger import JobRequest
from lockgate.controller.manifests import job_manifest
from lockgate.controller.spec import GROUP, PLURAL, VERSION, parse_migration
from lockgate.shared.versions import Version

TS = "2026-12-06T10:00:00Z"
RESOURCES = {
    "SchemaMigration": Resource(GROUP, VERSION, PLURAL, namespaced=True),
    "Job": Resource("batch", "v1", "jobs", namespaced=True),
    "Pod": Resource("", "v1", "pods", namespaced=True),
}


def managed(manager: str, subresource: str = "") -> dict[str, Any]:
    fields = {"f:metadata": {"f:labels": {".": {}}}, "f:spec": {"f:template": {"f:spec": {}}}, "f:status": {}}
    entry = {"manager": manager, "operation": "Update", "time": TS, "fieldsType": "FieldsV1", "fieldsV1": fields}
    return entry | ({"subresource": subresource} if subresource else {})


def schema_migration(namespace: str, name: str) -> dict[str, Any]:
    condition = {
        "status": "False",
        "reason": "Expanded",
        "message": "expand of version 1 succeeded",
        "lastTransitionTime": TS,
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SchemaMigration",
        "metadata": {
            **{"name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "generation": 1},
            **{"resourceVersion": "123456", "creationTimestamp": TS},
            "managedFields": [managed("OpenAPI-Generator"), managed("Python-urllib3", "status")],
        },
        "spec": {
            "version": "1",
            "image": "lockgate:dev",
            "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}, "historyTable": f"h_{name}"},
            "migrations": {"configMap": {"name": "scripts"}},
            "background": {"enabled": False},
            "contract": {"enabled": False},
        },
        "status": {
            "phase": "Expanded",
            "expandedVersion": "1",
            "observedGeneration": 1,
            "conditions": [{**condition, "type": t} for t in ("Ready", "Progressing", "Stalled")],
            "history": [{"phase": "expand", "version": "1", "job": f"{name}-expand-1", "result": "Succeeded"}],
        },
    }


def job(migration: dict[str, Any]) -> dict[str, Any]:
    name = f"{migration['metadata']['name']}-expand-1"
    request = JobRequest("expand", Version.parse("1"), "a1b2c3", name, "lockgate:dev")
    body = job_manifest(parse_migration(copy.deepcopy(migration)), request)
    uid = str(uuid.uuid4())
    body["metadata"].update(uid=uid, resourceVersion="234567", creationTimestamp=TS)
    body["metadata"]["managedFields"] = [managed("Python-urllib3"), managed("kube-controller-manager", "status")]
    controller = {"controller-uid": uid, "batch.kubernetes.io/controller-uid": uid, "job-name": name}
    body["metadata"]["labels"].update(controller)
    body["spec"]["template"]["metadata"]["labels"].update(controller)
    body["spec"].update(suspend=False, selector={"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    complete = {"status": "True", "lastProbeTime": TS, "lastTransitionTime": TS}
    body["status"] = {
        "conditions": [{**complete, "type": "SuccessCriteriaMet"}, {**complete, "type": "Complete"}],
        **{"startTime": TS, "completionTime": TS, "succeeded": 1, "ready": 0, "terminating": 0},
    }
    return body


def pod(of: dict[str, Any]) -> dict[str, Any]:
    body = {"apiVersion": "v1", "kind": "Pod", **copy.deepcopy(of["spec"]["template"])}
    meta = body["metadata"]
    meta.update(name=f"{of['metadata']['name']}-x7k2p", namespace=of["metadata"]["namespace"], uid=str(uuid.uuid4()))
    meta.update(resourceVersion="345678", creationTimestamp=TS, finalizers=["batch.kubernetes.io/job-tracking"])
    meta["ownerReferences"] = [
        {"apiVersion": "batch/v1", "kind": "Job", "name": of["metadata"]["name"], "controller": True}
    ]
    meta["managedFields"] = [managed("kube-controller-manager"), managed("kubelet", "status")]
    body["spec"].update(nodeName="node", serviceAccountName="default", priority=0, enableServiceLinks=True)
    report = json.dumps(
        {"lockgate": 1, "phase": "expand", "version": "1", "result": "succeeded", "applied": ["V1__t.sql"]}
    )
    terminated = {"exitCode": 0, "reason": "Completed", "message": report, "startedAt": TS, "finishedAt": TS}
    body["status"] = {
        **{
            "phase": "Succeeded",
            "hostIP": "10.0.0.2",
            "podIP": "10.244.0.5",
            "startTime": TS,
            "qosClass": "BestEffort",
        },
        "conditions": [
            {"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": TS}
            for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
        ],
        "containerStatuses": [
            {
                "name": "migrate",
                "ready": False,
                "restartCount": 0,
                "image": "lockgate:dev",
                "imageID": "sha256:" + "ab" * 32,
            }
            | {"containerID": "containerd://" + "cd" * 32, "state": {"terminated": terminated}, "lastState": {}}
        ],
    }
    return body


class Requests:
    """Stands in for the reconciler: counts the passes the handlers ask for."""

    def __init__(self) -> None:
        self.count = 0

    def request(self, key: tuple[str, str]) -> None:
        self.count += 1


async def feed(events: list[tuple[str, str]]) -> tuple[dict[str, int], list[tracemalloc.StatisticDiff], int]:
    registry, indexers = get_default_registry(), OperatorIndexers()
    indexers.ensure(registry._indexing.get_all_handlers())
    memories, settings, memo, requests = ResourceMemories(), OperatorSettings(), AnyMemo(Memo()), Requests()
    handlers.OPERATOR.indexes = {name: indexers.indices[name] for name in handlers.INDEXES}
    handlers.OPERATOR.reconciler = requests  # type: ignore[assignment]  # no API calls here
    kept, start = {}, tracemalloc.take_snapshot()
    for kind in RESOURCES:
        before = tracemalloc.get_traced_memory()[0]
        for _, text in (e for e in events if e[0] == kind):
            raw_event = {"type": None, "object": json.loads(text)}  # as the initial listing yields them
            await process_resource_event(
                **{"lifecycle": get_default_lifecycle(), "registry": registry, "settings": settings},
                **{"indexers": indexers, "memories": memories, "memobase": memo, "event_queue": asyncio.Queue()},
                resource=RESOURCES[kind],
                raw_event=raw_event,  # type: ignore[arg-type]
            )
        await asyncio.sleep(0.1)  # timers and tasks the handlers started settle
        gc.collect()
        kept[kind] = tracemalloc.get_traced_memory()[0] - before
    return kept, tracemalloc.take_snapshot().compare_to(start, "lineno"), requests.count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--many", type=int, default=1000)
    parser.add_argument("--top", type=int, default=12, help="how many of the lines that keep the most to print")
    args = parser.parse_args()
    events = []
    for i in range(args.many):
        migration = schema_migration(f"bench-{i % 50}", f"many{i}")
        expand = job(migration)
        events += [
            ("SchemaMigration", json.dumps(migration)),
            ("Job", json.dumps(expand)),
            ("Pod", json.dumps(pod(expand))),
        ]
    sizes = {kind: sum(len(text) for k, text in events if k == kind) // args.many for kind in RESOURCES}
    tracemalloc.start()
    kept, lines, passes = asyncio.run(feed(events))
    print(
        f"{args.many} each of SchemaMigration, Job and Job pod through kopf's event processing ({passes} passes asked for):"
    )
    for kind, size in kept.items():
        print(
            f"  {kind:<16} {size / 2**20:6.1f} MiB kept   {size / args.many / 1024:5.1f} KiB each ({sizes[kind]} bytes of JSON)"
        )
    print(f"  {'in all':<16} {sum(kept.values()) / 2**20:6.1f} MiB")
    print("where it stays:")
    for line in lines[: args.top]:
        frame = line.traceback[0]
        print(
            f"  {line.size_diff / 1024:8.0f} KiB {line.count_diff:7d} blocks  {frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
        )


if __name__ == "__main__":
    main()
