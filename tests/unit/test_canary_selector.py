"""spec.targets.canary.selector: the tenants whose Secret matches form the canary wave (selectors.py),
run first in list order; a Secret relabelled mid-release changes the waves' lists, so the phase
runs again from the canary wave, the gate staying as it was."""

from __future__ import annotations

from typing import Any

import pytest

from lockgate.controller.decide import Decision, decide
from lockgate.controller.manifests import job_manifest
from lockgate.controller.observed import job_view
from lockgate.controller.selectors import SELECTOR_REFRESH
from lockgate.controller.spec import Migration, parse_spec, with_selected
from tests.release_walk import applied, conditions, observe
from tests.unit.test_canary_waves import finish, listed
from tests.unit.test_targets import DATABASE, ONLY_EXPAND, fan_out, index_pod, spec

CANARY = {"matchLabels": {"lockgate.dev/canary": "yes"}}
TENANTS = ["a-db", "b-db", "c-db", "d-db"]


def canary_by_label(**fields: Any) -> Migration:
    return fan_out(ONLY_EXPAND, databases={"secrets": TENANTS}, canary={"selector": CANARY, **fields})


def finish_relabelled(built: Migration, now: Migration, claimed: Decision) -> Decision:
    """The next decision, as `now` lists its targets, once the Job `claimed` made for the targets
    `built` listed (before the relabel) succeeded."""
    body = job_manifest(built, claimed.create)
    body["metadata"]["uid"] = f"uid-{claimed.create.name}"
    total = body["spec"]["completions"]
    body["status"] = {
        "completedIndexes": f"0-{total - 1}",
        "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-21T11:59:30Z"}],
    }
    pods = [index_pod(claimed.create.name, i, 0) for i in range(total)]
    return decide(observe(applied(now, claimed), jobs=[job_view(body)], job_pods=pods))


@pytest.mark.parametrize(
    ("targets", "problem"),
    [
        (
            {"schemas": ["a", "b"], "canary": {"selector": CANARY}},
            "spec.targets.canary.selector: schemas have no labels: pick the canaries with spec.targets.canary.count",
        ),
        (
            {"databases": {"secrets": TENANTS}, "canary": {"selector": CANARY, "count": 1}},
            "spec.targets.canary: set count (the first targets) or selector (by label), one of them",
        ),
        (
            {"databases": {"secrets": TENANTS}, "canary": {"requireApproval": True}},
            "spec.targets.canary: set count (the first targets) or selector (by label), one of them",
        ),
        (
            {"databases": {"secrets": TENANTS}, "canary": {"selector": {}}},
            "spec.targets.canary.selector: give matchLabels or matchExpressions",
        ),
    ],
)
def test_a_canary_selector_on_schemas_beside_a_count_or_empty_is_refused(targets: dict[str, Any], problem: str) -> None:
    parsed = parse_spec(spec(targets=targets, **({"database": DATABASE} if "schemas" in targets else {})))
    assert any(p.startswith(problem) for p in parsed.problems), parsed.problems


def test_the_matching_targets_come_first_in_list_order_as_the_canary_wave() -> None:
    m = canary_by_label()
    assert m.spec.problems == () and m.spec.targets.canary_selector == "lockgate.dev/canary=yes"
    resolved = with_selected(m, (), ("d-db", "b-db", "other-db"))  # a matching non-target is no target
    assert resolved.spec.problems == ()
    assert (resolved.spec.targets.names, resolved.spec.targets.canary) == (("b-db", "d-db", "a-db", "c-db"), 2)
    first = decide(observe(resolved))
    assert listed(resolved, first) == ("canary", 2, "b-db,d-db") and first.requeue_after == SELECTOR_REFRESH
    rest = finish(resolved, first)
    assert listed(resolved, rest) == ("rest", 2, "a-db,c-db")


def test_with_a_databases_selector_its_matches_can_be_canaries_too() -> None:
    m = fan_out(ONLY_EXPAND, databases={"selector": {"matchLabels": {"t": "y"}}}, canary={"selector": CANARY})
    resolved = with_selected(m, ("z-db", "a-db"), ("z-db",))
    assert (resolved.spec.targets.names, resolved.spec.targets.canary, resolved.spec.problems) == (
        ("z-db", "a-db"),
        1,
        (),
    )


@pytest.mark.parametrize(
    ("matched", "problem"),
    [
        ((), "spec.targets.canary.selector: none of the 4 targets' Secrets matches lockgate.dev/canary=yes"),
        (tuple(TENANTS), "spec.targets.canary.selector: each of the 4 targets' Secrets matches"),
        (None, "spec.targets.canary.selector: the operator may not list Secrets in this namespace: install its chart"),
    ],
)
def test_a_canary_selector_matching_none_or_every_target_or_unlistable_is_invalid(
    matched: tuple[str, ...] | None, problem: str
) -> None:
    refused = decide(observe(with_selected(canary_by_label(), (), matched)))
    stalled = next(c for c in refused.status["conditions"] if c["type"] == "Stalled")
    assert refused.create is None and stalled["reason"] == "InvalidSpec" and problem in stalled["message"]
    assert refused.requeue_after == SELECTOR_REFRESH  # relabelled or granted later: picked up without an edit


def test_a_secret_labelled_a_canary_after_the_canary_wave_runs_the_canary_wave_again() -> None:
    m = canary_by_label()
    before = with_selected(m, (), ("b-db",))
    first = decide(observe(before))
    assert listed(before, first)[2] == "b-db"
    after = with_selected(applied(m, first), (), ("b-db", "c-db"))  # c-db labelled while b-db ran
    again = finish_relabelled(before, after, first)  # b-db's canary Job succeeded, for a list that is no more
    assert "appliedVersion" not in again.status and conditions(again)["Ready"] == "False"
    assert listed(after, again) == ("canary", 2, "b-db,c-db") and again.create.name != first.create.name
    rest = finish(applied(after, first), again)
    assert listed(after, rest) == ("rest", 2, "a-db,d-db")


def test_a_rest_job_that_ran_before_a_relabel_does_not_open_the_gate_and_the_phase_runs_again() -> None:
    m = canary_by_label()
    before = with_selected(m, (), ("b-db",))
    first = decide(observe(before))
    rest = finish(before, first)
    assert listed(before, rest) == ("rest", 3, "a-db,c-db,d-db")
    # c-db labelled while the rest Job ran: the rest wave is a-db and d-db now.
    after = with_selected(applied(applied(m, first), rest), (), ("b-db", "c-db"))
    done = finish_relabelled(with_selected(applied(m, first), (), ("b-db",)), after, rest)
    assert "appliedVersion" not in done.status and conditions(done)["Ready"] == "False"
    assert listed(after, done) == ("canary", 2, "b-db,c-db")  # the new canaries first (b-db applies nothing)


def test_a_relabel_after_the_version_expanded_runs_both_waves_again_with_the_gate_open() -> None:
    m = canary_by_label()
    before = with_selected(m, (), ("b-db",))
    first = decide(observe(before))
    rest = finish(before, first)
    done = finish(applied(before, first), rest)
    assert done.status["appliedVersion"] == "3" and conditions(done)["Ready"] == "True" and done.create is None
    after = with_selected(applied(applied(m, first), done), (), ("b-db", "c-db"))
    again = decide(observe(after))
    assert listed(after, again) == ("canary", 2, "b-db,c-db") and again.status["appliedVersion"] == "3"
    assert conditions(again)["Ready"] == "True"
