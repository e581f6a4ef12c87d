"""Canary first (controller/waves.py and the wave key of the ledger's claim): the canary wave's Job,
then the rest's, each exactly one Job per version, phase and wave; a failing canary stops the rest
and is named; approval holds the rest of expand; new targets catch up starting with the canaries."""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

import pytest
import yaml

from lockgate.controller.decide import Decision, decide
from lockgate.controller.ledger import job_name
from lockgate.controller.manifests import job_manifest
from lockgate.controller.observed import job_view
from lockgate.controller.spec import Migration, parse_spec
from lockgate.controller.targets import wave_targets
from lockgate.shared.versions import Version
from tests.release_walk import applied, conditions, migration, observe
from tests.unit.test_spec import with_defaults
from tests.unit.test_targets import CRD, DATABASE, ONLY_EXPAND, SCHEMAS, index_pod, spec

TENANTS = ("tenant_a", "tenant_b", "tenant_c", "tenant_d")
MESSAGE = 'relation "items" already exists'
CAUSE = f"V3__items.sql line 1: [42P07] {MESSAGE}"


def canary(count: int = 1, approval: bool = False, phases: dict[str, Any] | None = None) -> Migration:
    targets = {"schemas": list(TENANTS), "canary": {"count": count, "requireApproval": approval}}
    return migration(targets=targets, **(ONLY_EXPAND if phases is None else phases))


def finish(m: Migration, claimed: Decision, failed: tuple[int, ...] = (), **parts: Any) -> Decision:
    """The next decision once the Job `claimed` made ran: each of its indexes succeeded but `failed`.
    The Job is read back from its manifest, as the operator's watch would show it."""
    body = job_manifest(m, claimed.create)
    total = body["spec"]["completions"]
    done = [i for i in range(total) if i not in failed]
    outcome = "Failed" if failed else "Complete"
    body["metadata"]["uid"] = f"uid-{claimed.create.name}"
    body["status"] = {
        "completedIndexes": ",".join(map(str, done)),
        "failedIndexes": ",".join(map(str, failed)),
        "conditions": [{"type": outcome, "status": "True", "lastTransitionTime": "2026-11-21T11:59:30Z"}],
    }
    pods = [index_pod(claimed.create.name, i, 1, MESSAGE) for i in failed]
    pods += [index_pod(claimed.create.name, i, 0) for i in done]
    return decide(observe(applied(m, claimed), jobs=[job_view(body)], job_pods=pods, **parts))


def listed(m: Migration, d: Decision) -> tuple[str, int, str]:
    """What a claimed Job migrates: its wave label, its completions and its targets' list."""
    body = job_manifest(m, d.create)
    env = {e["name"]: e.get("value") for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}
    return body["metadata"]["labels"].get("lockgate.dev/wave", ""), body["spec"]["completions"], env["LOCKGATE_TARGETS"]


def reconciling(d: Decision) -> dict[str, Any]:
    return next(c for c in d.status["conditions"] if c["type"] == "Reconciling")


@pytest.mark.parametrize(("count", "problem"), [(0, "0 is not between 1 and 3"), (4, "4 is not between 1 and 3")])
def test_a_canary_of_none_or_of_every_target_is_refused(count: int, problem: str) -> None:
    parsed = parse_spec(spec(targets={"schemas": list(TENANTS), "canary": {"count": count}}, database=DATABASE))
    assert any(p.startswith("spec.targets.canary.count: ") and problem in p for p in parsed.problems), parsed.problems


def test_a_canary_parses_with_exactly_the_crd_defaults() -> None:
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    raw = spec(targets={"schemas": SCHEMAS, "canary": {"count": 2}}, database=DATABASE)
    parsed = parse_spec(copy.deepcopy(raw))
    assert parsed.problems == () and parsed == parse_spec(with_defaults(copy.deepcopy(raw), schema))
    assert (parsed.targets.canary, parsed.targets.canary_approval) == (2, False)


def test_the_canaries_expand_first_then_the_rest_and_only_then_the_gate_opens() -> None:
    m = canary(count=2)
    first = decide(observe(m))
    assert listed(m, first) == ("canary", 2, "tenant_a,tenant_b") and "-expand-canary-3-" in first.create.name
    rest = finish(m, first)
    assert "appliedVersion" not in rest.status and conditions(rest)["Ready"] == "False"  # the canaries alone
    assert listed(m, rest) == ("rest", 2, "tenant_c,tenant_d") and "-expand-rest-3-" in rest.create.name
    counts = rest.status["targets"]["phases"]["expand"]
    assert (counts["wave"], counts["succeeded"], counts["pending"], rest.status["targets"]["canary"]) == (
        "rest",
        2,
        2,
        2,
    )
    assert rest.status["targets"]["summary"] == "2/4 expand"
    done = finish(applied(m, first), rest)
    assert done.status["appliedVersion"] == "3" and conditions(done)["Ready"] == "True"
    assert done.status["phase"] == "Complete" and done.create is None
    assert done.status["targets"]["summary"] == "4/4 expand"
    assert [e["wave"] for e in done.status["history"]] == ["canary", "rest"]


def test_a_failing_canary_stops_the_rest_is_named_and_a_retry_runs_it_again() -> None:
    m = canary()
    first = decide(observe(m))
    failed = finish(m, first, failed=(0,))
    assert failed.create is None and failed.status["phase"] == "Failed" and "appliedVersion" not in failed.status
    assert failed.status["targets"]["failed"] == [{"phase": "expand", "target": "tenant_a", "error": CAUSE}]
    stalled = next(c for c in failed.status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["message"].startswith(
        f"expand canary Job {first.create.name} failed"
    )
    assert f"1 of 1 targets failed: tenant_a: {CAUSE}; the other targets wait for the canaries" in stalled["message"]
    assert [e.reason for e in failed.events] == ["ExpandFailed"]
    held = applied(m, failed)
    assert decide(observe(held)).create is None  # nothing runs until retried
    retried = decide(observe(dataclasses.replace(held, annotations={"lockgate.dev/retry": "1"})))
    assert listed(m, retried)[0] == "canary" and retried.create.name != first.create.name  # the canary again
    rest = finish(dataclasses.replace(held, annotations={"lockgate.dev/retry": "1"}), retried)
    assert listed(m, rest) == ("rest", 3, "tenant_b,tenant_c,tenant_d")


def test_a_failing_rest_is_retried_without_the_canaries() -> None:
    m = canary()
    rest = finish(m, decide(observe(m)))
    failed = finish(applied(m, decide(observe(m))), rest, failed=(1,))
    assert failed.status["targets"]["failed"] == [{"phase": "expand", "target": "tenant_c", "error": CAUSE}]
    assert failed.status["targets"]["phases"]["expand"]["succeeded"] == 3  # the canary and two of the rest
    retry = dataclasses.replace(applied(m, failed), annotations={"lockgate.dev/retry": "1"})
    assert listed(retry, decide(observe(retry)))[0] == "rest"


def test_the_rest_of_expand_waits_for_the_canary_approval_naming_the_version() -> None:
    m = canary(approval=True)
    waiting = finish(m, decide(observe(m)))
    assert waiting.create is None and waiting.status["phase"] == "AwaitingCanaryApproval"
    assert (conditions(waiting)["Ready"], conditions(waiting)["Stalled"]) == ("False", "False")
    assert reconciling(waiting)["status"] == "True" and reconciling(waiting)["reason"] == "AwaitingCanaryApproval"
    assert "annotate lockgate.dev/approve-canary=3 to expand the other 3" in reconciling(waiting)["message"]
    assert [e.reason for e in waiting.events] == ["ExpandSucceeded", "AwaitingCanaryApproval"]
    held = applied(m, waiting)
    stale = dataclasses.replace(held, annotations={"lockgate.dev/approve-canary": "2"})  # another version's
    assert decide(observe(stale)).create is None
    approved = decide(observe(dataclasses.replace(held, annotations={"lockgate.dev/approve-canary": "3"})))
    assert listed(m, approved)[0] == "rest" and approved.status["phase"] == "Expanding"


def test_every_phase_runs_its_canary_wave_first() -> None:
    m = canary(phases={"contract": {"enabled": False}})
    expanded = finish(applied(m, decide(observe(m))), finish(m, decide(observe(m))))
    assert expanded.status["appliedVersion"] == "3" and expanded.create.phase == "background"
    assert listed(m, expanded)[0] == "canary"
    after = finish(applied(m, expanded), expanded)
    assert after.create.phase == "background" and listed(m, after)[0] == "rest"
    assert "backgroundVersion" not in after.status  # the canaries' background alone advances nothing


def test_new_targets_catch_up_canaries_first_while_the_gate_stays_open() -> None:
    m = canary()
    complete = applied(m, finish(applied(m, decide(observe(m))), finish(m, decide(observe(m)))))
    assert complete.status["phase"] == "Complete"
    grown_targets = dataclasses.replace(m.spec.targets, names=(*TENANTS, "tenant_e"))
    grown = dataclasses.replace(complete, spec=dataclasses.replace(m.spec, targets=grown_targets), generation=2)
    again = decide(observe(grown))
    assert listed(grown, again)[0] == "canary" and conditions(again)["Ready"] == "True"
    rest = finish(grown, again)
    assert listed(grown, rest) == ("rest", 4, "tenant_b,tenant_c,tenant_d,tenant_e")
    assert rest.status["appliedVersion"] == "3" and conditions(rest)["Ready"] == "True"
    caught_up = finish(applied(grown, again), rest)
    assert caught_up.create is None and caught_up.status["phase"] == "Complete"
    assert caught_up.status["targets"]["summary"] == "5/5 expand"


def test_each_wave_has_its_own_job_name_and_a_fan_out_without_canary_keeps_its_names() -> None:
    m = canary()
    names = {job_name(m, "expand", Version.parse("3"), "a", w) for w in ("", "canary", "rest")}
    assert (
        len(names) == 3
        and job_name(m, "expand", Version.parse("3"), "a")
        == "shop-expand-3-" + (job_name(m, "expand", Version.parse("3"), "a").rsplit("-", 1)[1])
    )
    long = dataclasses.replace(m, name="a" * 63)
    for wave in ("canary", "rest"):
        made = job_name(long, "background", Version.parse("2026.11.21.1234567890.1"), "a", wave)
        assert len(made) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", made) and f"-{wave}-" in made
    targets = m.spec.targets
    assert [wave_targets(targets, w).names for w in ("canary", "rest", "")] == [TENANTS[:1], TENANTS[1:], TENANTS]


def test_undo_runs_its_canary_wave_first_and_only_the_rest_lowers_the_schema() -> None:
    m = canary()
    complete = applied(m, finish(applied(m, decide(observe(m))), finish(m, decide(observe(m)))))
    lowered = migration(
        "2",
        complete.status,
        2,
        targets={"schemas": list(TENANTS), "canary": {"count": 1}},
        rollback={"policy": "Undo"},
        **ONLY_EXPAND,
    )
    first = decide(observe(lowered))
    assert first.create.phase == "undo" and listed(lowered, first)[0] == "canary"
    rest = finish(lowered, first)
    assert rest.status["appliedVersion"] == "3" and listed(lowered, rest) == ("rest", 3, "tenant_b,tenant_c,tenant_d")
    assert finish(applied(lowered, first), rest).status["appliedVersion"] == "2"
