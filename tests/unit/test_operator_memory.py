"""What the operator keeps per SchemaMigration, and the memory it hands back (allocator.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import kopf
import pytest

from lockgate.controller import allocator
from lockgate.controller.handlers import Operator, migration_idx
from lockgate.controller.spec import parse_migration

BODY: dict[str, Any] = {
    "apiVersion": "lockgate.dev/v1alpha1",
    "kind": "SchemaMigration",
    "metadata": {
        "name": "shop",
        "namespace": "ns",
        "uid": "uid-1",
        "generation": 2,
        "resourceVersion": "42",
        "annotations": {"lockgate.dev/retry": "1", "kubectl.kubernetes.io/last-applied-configuration": "{...}"},
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
    },
    "spec": {
        "version": "3",
        "image": "shop:3",
        "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
    },
    "status": {"phase": "Expanded", "conditions": [{"type": "Ready", "status": "True", "reason": "Expanded"}]},
}


def test_the_cached_schemamigration_reads_back_as_what_the_api_sent() -> None:
    cached = asyncio.run(migration_idx(namespace="ns", name="shop", body=kopf.Body(BODY)))
    assert cached.keys() == {("ns", "shop")}
    text = cached["ns", "shop"]
    assert "managedFields" not in text and "last-applied" not in text
    operator = Operator()
    operator.indexes = {name: {} for name in ("job_idx", "job_pod_idx", "gated_pod_idx")}
    operator.indexes |= {"migration_idx": {("ns", "shop"): [text]}}
    operator.indexes |= {f"workload_idx_{p}": {} for p in ("deployments", "statefulsets", "daemonsets")}
    assert operator.observe(("ns", "shop")).migration == parse_migration(BODY)


def test_threads_share_two_arenas() -> None:
    """32 threads allocating at once would get 16 arenas on 2 cores; after limit_arenas, 2."""
    script = textwrap.dedent(
        """
        import ctypes, json, threading
        from lockgate.controller import allocator
        assert allocator.limit_arenas()
        def work():
            for _ in range(200):
                json.loads(json.dumps({"x": ["a" * 600] * 20}))
        threads = [threading.Thread(target=work) for _ in range(32)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        ctypes.CDLL(None).malloc_stats()
        """
    )
    stats = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stderr
    assert stats.count("Arena ") == allocator.ARENAS


def test_trims_once_when_the_watches_have_been_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[float] = []
    monkeypatch.setattr(allocator, "QUIET", 0.05)
    monkeypatch.setattr(allocator, "trim", lambda: trims.append(asyncio.get_running_loop().time()) or True)

    async def burst() -> float:
        trimmer = allocator.Trimmer()
        for _ in range(5):
            await asyncio.sleep(0.02)  # events closer together than QUIET: no trim yet
            trimmer.poke()
        last = asyncio.get_running_loop().time()
        await asyncio.sleep(0.2)
        return last

    last = asyncio.run(burst())
    assert len(trims) == 1 and trims[0] >= last + 0.05
