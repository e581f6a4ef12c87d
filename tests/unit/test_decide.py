"""The operator's decisions, as a pure function of what it observes (no cluster)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

from lockgate.controller.conditions import StatusPhase
from lockgate.controller.decide import decide
from lockgate.controller.history_entry import Result
from lockgate.controller.ledger import CLAIM_GRACE, HISTORY_LIMIT, LOST_GRACE, JobRef, attempt_key
from lockgate.controller.spec import Migration
from lockgate.shared.progress import Progress
from tests.release_walk import (
    NOW,
    RELEASE,
    applied,
    conditions,
    job,
    migration,
    observe,
    pod,
    report,
    walk_release,
    workload,
)


def test_a_release_walks_through_every_phase() -> None:
    """The release table (tests/release_walk.py), row by row, each from the status the last wrote."""
    walked = list(walk_release())
    for w in walked:
        d, row, found = w.decision, w.row, {c["type"]: c["status"] for c in w.status["conditions"]}
        decided = (w.status["phase"], w.status.get("appliedVersion"), found["Ready"], found["Stalled"])
        assert decided == (row.phase, row.expanded, row.ready, row.stalled), row.step
        assert (d.create and d.create.phase) == row.creates, row.step
        assert tuple(e.reason for e in d.events) == row.events, row.step
        assert not (found["Stalled"] == found["Reconciling"] == "True"), row.step  # kstatus: never both
    one_database = set(StatusPhase) - {StatusPhase.AWAITING_CANARY_APPROVAL}  # tenants only: test_targets.py
    assert {w.status["phase"] for w in walked} == one_database and len(walked) == len(RELEASE)


def test_a_new_migration_claims_exactly_one_expand_job() -> None:
    d = decide(observe(migration()))
    assert d.create is not None and (d.create.phase, str(d.create.version)) == ("expand", "3")
    assert d.create.name.startswith("shop-expand-3-")
    assert d.status["history"] == [d.status["history"][0]] and d.status["history"][0]["result"] == "Running"
    assert d.status["jobs"] == {"expand": d.create.name}
    assert conditions(d) == {
        "Ready": "False",
        "Reconciling": "True",
        "Stalled": "False",
        "Expanded": "False",
        "RolledOut": "False",
        "Contracted": "False",
    }
    assert d.status["phase"] == "Expanding" and d.status["observedGeneration"] == 1
    assert [e.reason for e in d.events] == ["JobCreated"]


def test_a_fresh_claim_waits_for_its_job_instead_of_claiming_again() -> None:
    first = decide(observe(migration()))
    m = applied(migration(), first)
    again = decide(observe(m, now=NOW + timedelta(seconds=1)))
    assert again.create is None and again.status is None
    assert 0 < again.requeue_after <= CLAIM_GRACE.total_seconds()
    late = decide(observe(m, now=NOW + CLAIM_GRACE + timedelta(seconds=1)))
    assert (
        late.create is not None and late.create.name == first.create.name
    )  # the operator stopped between claim and create
    assert late.status is not None  # even a re-create goes through a guarded status write


def test_a_running_job_is_waited_for() -> None:
    first = decide(observe(migration()))
    seen = decide(observe(applied(migration(), first), jobs=[job(first.create.name, attempt=first.create.attempt)]))
    assert seen.create is None and seen.release == ()
    assert "is running" in next(c for c in seen.status["conditions"] if c["type"] == "Reconciling")["message"]
    again = decide(observe(applied(migration(), seen), jobs=[job(first.create.name, attempt=first.create.attempt)]))
    assert again.status is None and again.create is None


def test_success_is_recorded_then_the_job_released_and_background_claimed() -> None:
    first = decide(observe(migration()))
    name = first.create.name
    d = decide(
        observe(
            applied(migration(), first),
            jobs=[job(name, state=Result.SUCCEEDED, attempt=first.create.attempt)],
            job_pods=[report(name)],
        )
    )
    entry = d.status["history"][0]
    assert (entry["result"], entry["applied"], entry["schemaVersion"], entry.get("error")) == (
        "Succeeded",
        2,
        "3",
        None,
    )
    assert d.status["appliedVersion"] == "3"
    assert (
        conditions(d)["Ready"] == "True"
        and conditions(d)["Expanded"] == "True"
        and conditions(d)["Reconciling"] == "False"
    )
    assert d.release == (name,)
    assert d.create is not None and d.create.phase == "background"
    assert [e.reason for e in d.events] == ["ExpandSucceeded", "JobCreated", "RolledOut"]  # no gated workloads yet
    assert [f.job for f in d.finished] == [name]


def test_a_finished_job_waits_briefly_for_its_pods_report() -> None:
    first = decide(observe(migration()))
    name, m = first.create.name, applied(migration(), first)
    finished = job(name, state=Result.SUCCEEDED, attempt=first.create.attempt)  # completed 11:59:30
    early = decide(observe(m, now=datetime(2026, 11, 21, 11, 59, 31, tzinfo=timezone.utc), jobs=[finished]))
    assert early.release == () and early.finished == () and early.requeue_after == 1.0
    late = decide(observe(m, jobs=[finished]))  # 30 s later: recorded without the summary
    assert (
        late.release == (name,)
        and late.status["history"][0]["result"] == "Succeeded"
        and "applied" not in late.status["history"][0]
    )


def test_a_failed_job_stalls_until_the_spec_or_the_retry_annotation_changes() -> None:
    first = decide(observe(migration()))
    name = first.create.name
    failure = report(
        name,
        applied=0,
        exit_code=1,
        error={"script": "V3__x.sql", "line": 4, "sqlstate": "42P01", "message": 'relation "nope" does not exist'},
    )
    failed = decide(
        observe(
            applied(migration(), first),
            jobs=[job(name, state=Result.FAILED, attempt=first.create.attempt)],
            job_pods=[failure],
        )
    )
    assert conditions(failed)["Stalled"] == "True" and conditions(failed)["Ready"] == "False"
    assert failed.create is None and failed.status["phase"] == "Failed"
    assert 'V3__x.sql line 4: [42P01] relation "nope" does not exist' in failed.status["history"][0]["error"]
    assert failed.events[0].type == "Warning" and failed.events[0].reason == "ExpandFailed"
    stalled = applied(migration(), failed)
    assert decide(observe(stalled)).create is None  # the Job is gone (TTL): still no second Job
    retried = decide(observe(dataclasses.replace(stalled, annotations={"lockgate.dev/retry": "1"})))
    assert retried.create is not None and retried.create.name != name
    respecified = decide(observe(dataclasses.replace(stalled, generation=2)))
    assert respecified.create is not None and respecified.create.name not in (name, retried.create.name)


def test_a_job_deleted_while_running_counts_as_failed() -> None:
    first = decide(observe(migration()))
    d = decide(
        observe(applied(migration(), first), jobs=[job(first.create.name, deleting=True, attempt=first.create.attempt)])
    )
    assert (
        d.status["history"][0]["result"] == "Failed" and "deleted before it finished" in d.status["history"][0]["error"]
    )
    assert d.release == (first.create.name,)


def test_a_created_job_runs_only_once_its_uid_is_bound_to_the_claim() -> None:
    first = decide(observe(migration()))
    name, attempt = first.create.name, first.create.attempt
    created = job(name, attempt=attempt, uid="u1", suspended=True)
    bound = decide(observe(applied(migration(), first), jobs=[created]))
    assert bound.status["history"][0]["jobUid"] == "u1"  # written before the Job may start
    assert (bound.start, bound.delete, bound.create) == ((JobRef(name, "u1"),), (), None)
    # Still suspended on the next pass (the start did not land): started again, the status unchanged.
    again = decide(observe(applied(migration(), bound), jobs=[created]))
    assert (again.status, again.start) == (None, (JobRef(name, "u1"),))


def test_a_create_that_lands_after_its_job_ran_is_deleted_unrun() -> None:
    """A replica's create, delayed past the claim grace, lands after another replica's Job of the
    same name ran, was recorded and deleted by its TTL: it is not bound, so it never runs."""
    first = decide(observe(migration()))
    name, attempt = first.create.name, first.create.attempt
    bound = decide(observe(applied(migration(), first), jobs=[job(name, attempt=attempt, uid="u1", suspended=True)]))
    ran = job(name, state=Result.SUCCEEDED, attempt=attempt, uid="u1")
    recorded = decide(observe(applied(migration(), bound), jobs=[ran], job_pods=[report(name)]))
    m = applied(migration(), recorded)
    late = job(name, attempt=attempt, uid="u2", suspended=True)
    d = decide(observe(m, jobs=[late]))
    assert (d.delete, d.start, d.status) == ((JobRef(name, "u2"),), (), None)
    # Being deleted: its finalizer goes, and it adds nothing to the history.
    going = decide(observe(m, jobs=[dataclasses.replace(late, deleting=True)]))
    assert going.release == (name,) and going.status is None and going.finished == ()


def test_a_late_create_never_takes_over_a_bound_claim() -> None:
    first = decide(observe(migration()))
    name, attempt = first.create.name, first.create.attempt
    bound = decide(observe(applied(migration(), first), jobs=[job(name, attempt=attempt, uid="u1", suspended=True)]))
    other = job(name, attempt=attempt, uid="u2", suspended=True)  # u1 is gone, u2 is another object
    d = decide(observe(applied(migration(), bound), jobs=[other]))
    assert d.delete == (JobRef(name, "u2"),) and d.start == ()


def test_a_bound_job_that_vanished_without_a_result_fails_and_is_not_created_again() -> None:
    first = decide(observe(migration()))
    name, attempt = first.create.name, first.create.attempt
    bound = applied(
        migration(),
        decide(observe(applied(migration(), first), jobs=[job(name, attempt=attempt, uid="u1", suspended=True)])),
    )
    soon = decide(observe(bound, now=NOW + LOST_GRACE - timedelta(seconds=1)))
    assert soon.create is None and soon.status["history"][0]["result"] == "Running"  # a watch may lag: wait
    assert soon.requeue_after == 1.0
    d = decide(observe(bound, now=NOW + LOST_GRACE + timedelta(seconds=1)))
    entry = d.status["history"][0]
    assert entry["result"] == "Failed" and "deleted before its result was recorded" in entry["error"]
    assert d.create is None and conditions(d)["Stalled"] == "True" and d.lost == (name,)
    assert [e.reason for e in d.events] == ["ExpandFailed"]


def background_running(**annotations: str) -> tuple[Migration, str]:
    """Version 3 expanded, its background Job claimed and bound; returns the migration and the Job's name."""
    m = expanded()
    first = decide(observe(m))
    name, attempt = first.create.name, first.create.attempt
    created = job(name, "background", attempt=attempt, uid="u1", suspended=True)
    bound = decide(observe(applied(m, first), jobs=[created]))
    m = applied(applied(m, first), bound)
    return dataclasses.replace(m, annotations=annotations), name


def test_pausing_suspends_the_background_job_and_resuming_starts_it_again() -> None:
    m, name = background_running(**{"lockgate.dev/paused": "true"})
    attempt = m.status["history"][-1]["attempt"]
    running = job(name, "background", attempt=attempt, uid="u1")
    paused = decide(observe(m, jobs=[running]))
    assert paused.suspend == (JobRef(name, "u1"),) and paused.status["phase"] == "Paused"
    assert conditions(paused)["Reconciling"] == "False" and conditions(paused)["Ready"] == "True"
    assert [e.reason for e in paused.events] == ["Paused"]
    suspended = dataclasses.replace(running, suspended=True)
    held = decide(observe(applied(m, paused), jobs=[suspended]))
    assert (held.start, held.suspend, held.create) == ((), (), None)  # stays suspended, nothing new claimed
    resumed = dataclasses.replace(applied(m, paused), annotations={})
    go = decide(observe(resumed, jobs=[suspended]))
    assert go.start == (JobRef(name, "u1"),) and go.status["phase"] == "Backfilling"


def test_background_progress_reaches_the_status_and_is_refreshed() -> None:
    m, name = background_running()
    attempt = m.status["history"][-1]["attempt"]
    running = job(name, "background", attempt=attempt, uid="u1")
    pod = dataclasses.replace(report(name), finished=None, report=None, started=True)
    line = Progress("A3__fill.sql", "running", 1200, 12, 40.0, 300.0, 6)
    d = decide(dataclasses.replace(observe(m, jobs=[running], job_pods=[pod]), progress={pod.name: line}))
    assert d.status["progress"] | {"summary": ""} == {
        "job": name,
        "script": "A3__fill.sql",
        "state": "running",
        "rows": 1200,
        "batches": 12,
        "percent": 40.0,
        "rowsPerSecond": 300.0,
        "etaSeconds": 6,
        "summary": "",
    }
    assert d.status["progress"]["summary"] == "40% 1,200 rows, 6s left" and d.progress == d.status["progress"]
    assert d.requeue_after == 10.0  # logs are not watched: read again soon
    # a pass that could not read the log keeps the last progress; a finished phase drops it
    assert decide(observe(applied(m, d), jobs=[running], job_pods=[pod])).status is None


def expanded(
    version: str = "3", background: str | None = None, contracted: str | None = None, **spec: Any
) -> Migration:
    status = {
        "appliedVersion": version,
        "backgroundVersion": background,
        "contractedVersion": contracted,
        "history": [],
    }
    return migration(version, status, **spec)


def test_the_gate_opens_for_pods_requiring_the_expanded_version_or_less() -> None:
    pods = [
        pod("new", "3"),
        pod("old", "2", ("True", "SchemaReady")),
        pod("future", "4"),
        pod("unlabelled", None),
        pod("garbage", "v3"),
    ]
    gates = {g.pod: (g.ready, g.reason) for g in decide(observe(expanded(), pods=pods)).gates}
    assert gates == {
        "new": (True, "SchemaReady"),
        "future": (False, "WaitingForSchema"),
        "unlabelled": (False, "MissingRequiredVersion"),
        "garbage": (False, "InvalidRequiredVersion"),
    }
    before = {g.pod: g.ready for g in decide(observe(migration(), pods=[pod("new", "3")])).gates}
    assert before == {"new": False}


def test_background_never_holds_the_gate_and_contract_waits_for_it() -> None:
    d = decide(observe(expanded(), pods=[pod("p", "3")], workloads=[workload("web")]))
    assert d.create.phase == "background"
    assert conditions(d)["Ready"] == "True" and d.gates[0].ready


def test_contract_waits_for_every_gated_workload_to_roll_out() -> None:
    rolling = decide(
        observe(
            expanded(background="3"), workloads=[workload("web", rolled_out=False)], pods=[pod("a", "3"), pod("b", "2")]
        )
    )
    assert rolling.create is None and conditions(rolling)["RolledOut"] == "False"
    assert "Deployment/web" in next(c for c in rolling.status["conditions"] if c["type"] == "RolledOut")["message"]
    old_pod = decide(
        observe(expanded(background="3"), workloads=[workload("web")], pods=[pod("a", "3"), pod("b", "2")])
    )
    assert old_pod.create is None  # a pod still needs the old schema
    old_template = decide(
        observe(expanded(background="3"), workloads=[workload("web", required="2")], pods=[pod("a", "3")])
    )
    assert old_template.create is None
    done = decide(observe(expanded(background="3"), workloads=[workload("web")], pods=[pod("a", "3")]))
    assert done.create is not None and done.create.phase == "contract"
    assert conditions(done)["RolledOut"] == "True" and "RolledOut" in [e.reason for e in done.events]


def test_contract_delay_and_approval() -> None:
    delayed = expanded(background="3", contract={"delay": "10m"})
    first = decide(observe(delayed))
    assert first.create is None and first.status["phase"] == "ContractPending" and first.requeue_after == 600
    later = decide(observe(applied(delayed, first), now=NOW + timedelta(minutes=10, seconds=1)))
    assert later.create is not None and later.create.phase == "contract"
    gated = expanded(background="3", contract={"requireApproval": True})
    waiting = decide(observe(gated))
    assert waiting.create is None and waiting.status["phase"] == "AwaitingApproval"
    wrong_version = decide(observe(dataclasses.replace(gated, annotations={"lockgate.dev/approve-contract": "2"})))
    assert wrong_version.create is None
    approved = decide(observe(dataclasses.replace(gated, annotations={"lockgate.dev/approve-contract": "3"})))
    assert approved.create is not None and approved.create.phase == "contract"


def test_complete_and_contract_disabled() -> None:
    done = decide(observe(expanded(background="3", contracted="3")))
    assert done.create is None and done.status["phase"] == "Complete" and conditions(done)["Contracted"] == "True"
    disabled = decide(observe(expanded(background="3", contract={"enabled": False})))
    assert (
        disabled.create is None
        and disabled.status["phase"] == "Complete"
        and conditions(disabled)["Contracted"] == "False"
    )


def test_lowering_the_version_starts_nothing_by_default_and_says_so() -> None:
    m = migration("2", {"appliedVersion": "3", "history": []})
    d = decide(observe(m, pods=[pod("old", "2"), pod("new", "3")]))
    assert d.create is None
    assert d.status["phase"] == "NewerSchemaKept" and conditions(d)["Ready"] == "True"
    assert "rollback.policy Never" in next(c for c in d.status["conditions"] if c["type"] == "Ready")["message"]
    assert {g.pod for g in d.gates if g.ready} == {"old", "new"}


def test_undo_runs_with_the_image_that_expanded_the_newer_version() -> None:
    history = [
        {
            "version": "3",
            "phase": "expand",
            "job": "shop-expand-3-x",
            "attempt": "a",
            "image": "registry/shop-migrations:3",
            "result": "Succeeded",
        }
    ]
    m = migration("2", {"appliedVersion": "3", "history": history}, rollback={"policy": "Undo"})
    d = decide(observe(m))
    assert d.create is not None and (d.create.phase, str(d.create.version), d.create.image) == (
        "undo",
        "2",
        "registry/shop-migrations:3",
    )
    assert d.status["phase"] == "RollingBack" and conditions(d)["Ready"] == "False"
    done = decide(
        observe(
            applied(m, d),
            jobs=[job(d.create.name, phase="undo", version="2", state=Result.SUCCEEDED, attempt=d.create.attempt)],
        )
    )
    assert done.status["appliedVersion"] == "2"
    no_image = decide(observe(migration("2", {"appliedVersion": "3", "history": []}, rollback={"policy": "Undo"})))
    assert no_image.create is None and conditions(no_image)["Stalled"] == "True"


def test_a_deleted_migration_releases_its_jobs_and_never_pulls_serving_pods() -> None:
    jobs = [job("shop-expand-3-x", state=Result.SUCCEEDED), job("shop-expand-3-y")]
    gone = decide(observe(None, jobs=jobs, pods=[pod("serving", "3", ("True", "SchemaReady")), pod("new", "3")]))
    assert gone.status is None and set(gone.release) == {"shop-expand-3-x", "shop-expand-3-y"}
    assert [(g.pod, g.ready, g.reason) for g in gone.gates] == [("new", False, "SchemaMigrationNotFound")]
    deleting = decide(observe(dataclasses.replace(migration(), deleting=True), jobs=jobs, pods=[pod("new", "3")]))
    assert deleting.gates == () and len(deleting.release) == 2


def test_jobs_of_an_earlier_migration_with_the_same_name_are_released_not_recorded() -> None:
    d = decide(observe(migration(), jobs=[job("shop-expand-3-old", state=Result.SUCCEEDED, owner="uid-0")]))
    assert d.release == ("shop-expand-3-old",)
    assert [e["result"] for e in d.status["history"]] == ["Running"]
    assert d.create is not None


def test_history_stays_bounded_but_keeps_running_claims() -> None:
    old = [
        {"version": str(i), "phase": "expand", "job": f"j{i}", "attempt": "a", "image": "i", "result": "Succeeded"}
        for i in range(1, 30)
    ]
    running = {
        "version": "3",
        "phase": "background",
        "job": "bg",
        "attempt": "a",
        "image": "i",
        "result": "Running",
        "claimedAt": "2026-11-21T11:59:59Z",
    }
    d = decide(observe(migration("30", {"appliedVersion": "29", "history": [running, *old]})))
    assert len(d.status["history"]) <= HISTORY_LIMIT + 1 and d.status["history"][0]["job"] == "bg"


def test_decisions_converge_nothing_changes_when_nothing_changed() -> None:
    m = expanded(background="3", contracted="3")
    first = decide(observe(m, pods=[pod("a", "3", ("True", "SchemaReady"))], workloads=[workload("web")]))
    second = decide(
        observe(
            applied(m, first),
            now=NOW + timedelta(minutes=5),
            pods=[pod("a", "3", ("True", "SchemaReady"))],
            workloads=[workload("web")],
        )
    )
    assert second.status is None and second.create is None and second.gates == () and second.events == ()


def test_status_has_no_nulls_and_patches_remove_what_went_away() -> None:
    from lockgate.controller.status import merge_patch

    d = decide(observe(migration()))
    assert "appliedVersion" not in d.status and "contractedVersion" not in d.status
    assert all(v is not None for e in d.status["history"] for v in e.values())
    again = decide(observe(applied(migration(), d), now=NOW + timedelta(seconds=1)))
    assert again.status is None  # stored form and decided form agree
    current = {"appliedVersion": "2", "gate": {"podsWaiting": 1, "old": 1}, "history": [{"a": 1}]}
    desired = {"gate": {"podsWaiting": 0}, "history": [{"b": 2}]}
    assert merge_patch(current, desired) == {
        "appliedVersion": None,
        "gate": {"old": None, "podsWaiting": 0},
        "history": [{"b": 2}],
    }


def test_an_operator_error_stalls_visibly_until_it_clears() -> None:
    first = decide(observe(migration()))
    m = applied(migration(), first)
    forbidden = 'the operator cannot act: 403 Forbidden: jobs.batch is forbidden: User "system:serviceaccount:x:lockgate" cannot create resource "jobs"'
    blocked = decide(dataclasses.replace(observe(m, now=NOW + CLAIM_GRACE * 2), error=forbidden.split(": ", 1)[1]))
    stalled = next(c for c in blocked.status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"], stalled["message"]) == ("True", "OperatorError", forbidden)
    assert conditions(blocked)["Ready"] == "False" and [e.reason for e in blocked.events] == ["OperatorError"]
    assert conditions(blocked)["Reconciling"] == "False"  # else kstatus reads InProgress, not Failed
    cleared = decide(observe(applied(m, blocked), now=NOW + CLAIM_GRACE * 2))
    assert conditions(cleared)["Stalled"] == "False" and conditions(cleared)["Reconciling"] == "True"


def test_a_stalled_status_is_never_reconciling_whatever_stalled_it() -> None:
    ready = decide(observe(migration(), jobs=[job("shop-expand-3-a", state=Result.SUCCEEDED)]))
    rolled_out = applied(migration(), ready)
    no_undo_image = migration("2", {"appliedVersion": "3", "history": []}, rollback={"policy": "Undo"})
    stalled = [
        decide(dataclasses.replace(observe(migration()), error="403 Forbidden: jobs.batch is forbidden")),
        decide(dataclasses.replace(observe(rolled_out), error="500: etcdserver: request timed out")),
        decide(observe(no_undo_image)),
    ]
    for d in stalled:
        assert (conditions(d)["Stalled"], conditions(d)["Reconciling"]) == ("True", "False"), d.status["conditions"]


def test_job_names_are_deterministic_and_fit_kubernetes() -> None:
    long = dataclasses.replace(migration("2026.11.21.1"), name="a" * 80)
    first, again = decide(observe(long)), decide(observe(long))
    assert first.create.name == again.create.name
    assert len(first.create.name) <= 63 and first.create.name.split("-")[-5:-1] == ["2026", "11", "21", "1"]


# paths through the ledger that the release walk above does not take


def claimed(phase: str, name: str, attempt: str) -> dict[str, Any]:
    return {"version": "3", "phase": phase, "job": name, "attempt": attempt, "image": "registry/shop-migrations:3"}


def expanded_status(*history: dict[str, Any], **versions: str) -> dict[str, Any]:
    return {"appliedVersion": "3", **versions, "history": [dict(e, result="Running") for e in history]}


def test_the_result_of_a_job_nobody_claimed_is_adopted() -> None:
    m = migration()
    done = job("shop-expand-3-lost", state=Result.SUCCEEDED, attempt=attempt_key(m))
    d = decide(observe(m, jobs=[done], job_pods=[report(done.name)]))
    entry = next(e for e in d.status["history"] if e["job"] == done.name)
    assert entry["result"] == "Succeeded" and entry["applied"] == 2 and "claimedAt" not in entry
    assert d.status["appliedVersion"] == "3" and done.name in d.release
    assert [e.reason for e in d.events][0] == "ExpandSucceeded"


def test_a_background_success_advances_background_and_lets_contract_start() -> None:
    m = migration()
    name = "shop-background-3-x"
    m = dataclasses.replace(m, status=expanded_status(claimed("background", name, attempt_key(m))))
    done = job(name, phase="background", state=Result.SUCCEEDED, attempt=attempt_key(m))
    d = decide(observe(m, jobs=[done], job_pods=[report(name)], workloads=[workload("web")]))
    assert d.status["backgroundVersion"] == "3" and name in d.release
    assert d.create is not None and d.create.phase == "contract" and d.status["phase"] == "Contracting"
    assert [e.reason for e in d.events][:2] == ["BackgroundSucceeded", "JobCreated"]


def test_a_contract_success_completes_the_release() -> None:
    m = migration()
    name = "shop-contract-3-x"
    m = dataclasses.replace(m, status=expanded_status(claimed("contract", name, attempt_key(m)), backgroundVersion="3"))
    done = job(name, phase="contract", state=Result.SUCCEEDED, attempt=attempt_key(m))
    d = decide(observe(m, jobs=[done], job_pods=[report(name)], workloads=[workload("web")]))
    assert d.status["contractedVersion"] == "3" and d.status["phase"] == "Complete"
    assert conditions(d)["Contracted"] == "True" and conditions(d)["Ready"] == "True" and d.create is None
    assert [e.reason for e in d.events][0] == "ContractSucceeded"


def test_a_failed_background_or_contract_job_stalls_without_closing_the_gate() -> None:
    for phase, versions in (("background", {}), ("contract", {"backgroundVersion": "3"})):
        m = migration()
        name = f"shop-{phase}-3-x"
        m = dataclasses.replace(m, status=expanded_status(claimed(phase, name, attempt_key(m)), **versions))
        failed = job(name, phase=phase, state=Result.FAILED, attempt=attempt_key(m))
        error = {"script": "A3__x.sql", "line": 1, "sqlstate": "42P01", "message": "no such table"}
        pods = [report(name, applied=0, exit_code=1, error=error)]
        d = decide(observe(m, jobs=[failed], job_pods=pods, workloads=[workload("web")], pods=[pod("web-1")]))
        assert d.status["phase"] == "Failed" and d.create is None, phase
        assert conditions(d)["Stalled"] == "True" and conditions(d)["Reconciling"] == "False"
        assert "no such table" in next(c for c in d.status["conditions"] if c["type"] == "Stalled")["message"]
        assert [e.reason for e in d.events][0] == f"{phase.capitalize()}Failed"
        assert [g.ready for g in d.gates] == [True]  # expanded stays expanded: new pods still pass


def test_a_spec_an_older_crd_let_through_stalls_for_good_and_runs_nothing() -> None:
    broken = migration(contract={"delay": "99999999999h"}, status={"appliedVersion": "2", "history": []})
    d = decide(observe(broken))
    stalled = next(c for c in d.status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
    assert stalled["message"].startswith("the spec cannot be used: spec.contract.delay: 99999999999h is longer than")
    assert (conditions(d)["Reconciling"], conditions(d)["Ready"], d.status["phase"]) == ("False", "False", "Failed")
    assert d.create is None and [(e.type, e.reason) for e in d.events] == [("Warning", "InvalidSpec")]
    again = decide(observe(applied(broken, d)))
    assert again.status is None and again.events == ()  # lasting: no flapping, no repeated Event


def failed_job(name: str, reason: str, message: str) -> Any:
    return dataclasses.replace(
        job(name, state=Result.FAILED), failed_reason=reason, failed_message=message, deadline=600, failed_pods=3
    )


def test_a_job_past_its_deadline_says_so_and_what_to_change() -> None:
    first = decide(observe(migration()))
    name = first.create.name
    late = failed_job(name, "DeadlineExceeded", "Job was active longer than specified deadline")
    d = decide(observe(applied(migration(), first), jobs=[late], now=NOW + timedelta(seconds=10)))
    assert d.status["history"][0]["error"] == (
        "the Job ran longer than activeDeadlineSeconds (600 s) and was stopped: "
        "raise spec.activeDeadlineSeconds or make the migration faster"
    )


def test_a_job_out_of_retries_without_a_report_points_at_its_logs() -> None:
    first = decide(observe(migration()))
    name = first.create.name
    spent = failed_job(name, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    d = decide(observe(applied(migration(), first), jobs=[spent], now=NOW + timedelta(seconds=10)))
    error = d.status["history"][0]["error"]
    assert "the pod failed 3 time(s)" in error and f"kubectl logs job/{name}" in error
