"""The per-SchemaMigration gauges the alerts read (controller/metrics.py), from real decisions."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from prometheus_client import CollectorRegistry

from lockgate.controller.decide import decide
from lockgate.controller.metrics import MigrationCollector, gauges_of
from lockgate.shared.progress import Progress
from tests.release_walk import NOW, applied, job, migration, observe, pod, report

T0 = NOW.timestamp()


def exported(collector: MigrationCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in registry.collect() for s in family.samples}


def test_a_stalled_migration_exports_since_when_and_why_and_nothing_once_it_recovers() -> None:
    first = decide(observe(migration()))
    m = applied(migration(), first)
    blocked = decide(dataclasses.replace(observe(m, now=NOW + timedelta(minutes=1)), error="403 Forbidden"))
    collector = MigrationCollector()
    collector.update("ns", "shop", blocked.status, blocked.held)
    series = exported(collector)
    stalled = (
        "lockgate_migration_stalled_since_timestamp_seconds",
        (("name", "shop"), ("namespace", "ns"), ("reason", "OperatorError")),
    )
    assert series[stalled] == T0 + 60  # the condition's lastTransitionTime, not the scrape's time
    assert series[("lockgate_migration_phase", (("name", "shop"), ("namespace", "ns"), ("phase", "Expanding")))] == 1
    cleared = decide(observe(applied(m, blocked), now=NOW + timedelta(minutes=2)))
    collector.update("ns", "shop", cleared.status, cleared.held)
    assert [k for k in exported(collector) if k[0] == stalled[0]] == []


def test_the_gate_exports_how_many_pods_it_holds_and_the_oldest_ones_creation() -> None:
    young = dataclasses.replace(pod("young", "3"), created="2026-11-21T11:59:30Z")
    held = decide(observe(migration(), pods=[pod("old", "3"), young]))  # nothing expanded yet: both wait
    g = gauges_of(held.status, held.held, None, T0)
    assert (g.pods_waiting, g.waiting_since) == (2, T0 - 120)  # pod() is created at 11:58
    expanded = migration(status={"appliedVersion": "3", "history": []})
    opened = decide(observe(expanded, pods=[pod("old", "3"), young]))
    g = gauges_of(opened.status, opened.held, None, T0)
    assert (g.pods_waiting, g.waiting_since) == (0, None)


def test_pods_of_a_missing_migration_keep_their_series_and_a_gone_migration_drops_all() -> None:
    collector = MigrationCollector()
    missing = decide(observe(None, pods=[pod("new", "3")]))
    collector.update("ns", "shop", None, missing.held)
    series = exported(collector)
    assert series[("lockgate_gate_pods_waiting", (("name", "shop"), ("namespace", "ns")))] == 1
    assert not [k for k in series if k[0] == "lockgate_migration_phase"]
    collector.update("ns", "shop", None, decide(observe(None)).held)
    assert exported(collector) == {}


def test_the_walks_last_progress_moves_only_with_its_rows_and_not_while_paused() -> None:
    def status(rows: int, state: str = "running") -> dict[str, object]:
        return {"phase": "Backfilling", "progress": {"rows": rows, "state": state}}

    first = gauges_of(status(100), (), None, T0)
    same = gauges_of(status(100), (), first, T0 + 600)
    more = gauges_of(status(250), (), same, T0 + 700)
    assert (first.moved, same.moved, more.moved) == (T0, T0, T0 + 700)
    assert gauges_of(status(250, "waiting"), (), more, T0 + 800).moved == T0 + 700  # pressure: still not moving
    assert gauges_of(status(250, "paused"), (), more, T0 + 800).moved is None  # paused on purpose
    assert gauges_of({"phase": "ContractPending"}, (), more, T0 + 900).moved is None  # the walk is done


def test_a_running_walk_reported_by_its_pod_is_exported() -> None:
    m = migration(status={"appliedVersion": "3", "history": []})
    d = decide(observe(m))  # claims the background Job
    m = applied(m, d)
    running = job(d.create.name, "background", attempt=d.create.attempt, uid="u1")
    walker = dataclasses.replace(report(d.create.name), finished=None, report=None, started=True)
    line = Progress("A3__fill.sql", "running", 1200, 12, 40.0, 300.0, 6)
    walked = decide(dataclasses.replace(observe(m, jobs=[running], job_pods=[walker]), progress={walker.name: line}))
    collector = MigrationCollector()
    collector.update("ns", "shop", walked.status, walked.held)
    moved = exported(collector)[
        ("lockgate_background_last_progress_timestamp_seconds", (("name", "shop"), ("namespace", "ns")))
    ]
    assert moved > T0  # the operator's clock: when it saw these rows first
