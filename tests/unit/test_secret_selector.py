"""spec.targets.databases.selector: tenants' Secrets picked by label, their names listed by the operator."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from lockgate.controller.decide import decide
from lockgate.controller.history_entry import Result
from lockgate.controller.selectors import SELECTOR, SELECTOR_REFRESH, label_selector
from lockgate.controller.spec import parse_spec, with_selected
from tests.release_walk import applied, observe
from tests.unit.test_targets import ONLY_EXPAND, fan_out, index_pod, indexed, manifest, spec

TENANTS = {"matchLabels": {"lockgate.dev/tenant": "yes"}}


def test_a_selector_becomes_the_apis_label_query() -> None:
    raw = {
        "matchLabels": {"tier": "paid", "app": "notes"},
        "matchExpressions": [
            {"key": "region", "operator": "In", "values": ["eu", "us"]},
            {"key": "example.com/frozen", "operator": "DoesNotExist"},
            {"key": "lockgate.dev/tenant", "operator": "Exists"},
        ],
    }
    assert label_selector(raw, SELECTOR) == (
        "app=notes,tier=paid,region in (eu,us),!example.com/frozen,lockgate.dev/tenant",
        [],
    )


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({}, "an empty one would take every Secret"),
        ({"matchExpressions": [{"key": "tier", "operator": "In"}]}, "tier In []: In and NotIn take label values"),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists", "values": ["x"]}]}, "tier Exists ['x']: "),
        ({"matchLabels": {"tier": "paid,app=x"}}, "tier = ['paid,app=x']: "),  # no smuggled second requirement
        ({"matchLabels": {"bad key": "x"}}, "'bad key' is not a label key"),
    ],
)
def test_a_bad_or_empty_selector_is_refused_naming_it(raw: dict[str, Any], problem: str) -> None:
    parsed = parse_spec(spec(targets={"databases": {"selector": raw}}))
    [said] = parsed.problems  # the selector's problem only
    assert said.startswith("spec.targets.databases.selector: ") and problem in said, said


def test_a_selector_alone_parses_and_its_matches_follow_the_listed_secrets_by_name() -> None:
    parsed = parse_spec(spec(targets={"databases": {"selector": TENANTS, "secrets": ["zed-db"]}}))
    assert parsed.problems == () and parsed.targets.selector == "lockgate.dev/tenant=yes"
    m = fan_out(databases={"selector": TENANTS, "secrets": ["zed-db"]})
    resolved = with_selected(m, ("b-db", "zed-db", "a-db"))
    assert resolved.spec.targets.names == ("zed-db", "a-db", "b-db") and resolved.spec.problems == ()
    volume = next(v for v in manifest(resolved)["spec"]["template"]["spec"]["volumes"] if "projected" in v)
    assert [s["secret"]["name"] for s in volume["projected"]["sources"]] == ["zed-db", "a-db", "b-db"]


def test_a_selector_matching_more_than_a_job_carries_is_refused_saying_what_to_do_instead() -> None:
    m = fan_out(databases={"selector": TENANTS})
    resolved = with_selected(m, tuple(f"t{n:04}-db" for n in range(1001)))
    [problem] = resolved.spec.problems
    assert "1001 targets, more than the 1000" in problem and "several SchemaMigrations" in problem
    assert decide(observe(resolved)).create is None  # nothing runs over part of them


def test_without_the_right_to_list_secrets_the_spec_says_which_chart_value_to_set() -> None:
    m = fan_out(databases={"selector": TENANTS})
    forbidden = decide(observe(with_selected(m, None)))
    assert forbidden.create is None and forbidden.status["phase"] == "Failed"
    stalled = next(c for c in forbidden.status["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "InvalidSpec" and "rbac.secretSelector=true" in stalled["message"]
    assert forbidden.requeue_after == SELECTOR_REFRESH  # granted later: picked up without an edit
    none = decide(observe(with_selected(m, ())))
    assert "no Secret here matches lockgate.dev/tenant=yes" in str(none.status["conditions"])


def test_a_newly_labelled_secret_is_a_new_target_and_catches_up() -> None:
    m = fan_out(ONLY_EXPAND, databases={"selector": TENANTS})
    first = decide(observe(with_selected(m, ("a-db", "b-db"))))
    assert first.create is not None and first.requeue_after == SELECTOR_REFRESH  # Secrets are not watched
    name = first.create.name
    done = dataclasses.replace(indexed(name, Result.SUCCEEDED, "0-1"), targets=("a-db", "b-db"))
    pods = [index_pod(name, i, 0) for i in range(2)]
    complete = applied(
        m, decide(observe(with_selected(applied(m, first), ("a-db", "b-db")), jobs=[done], job_pods=pods))
    )
    assert complete.status["phase"] == "Complete"
    assert decide(observe(with_selected(complete, ("a-db", "b-db")))).create is None
    catch_up = decide(observe(with_selected(complete, ("a-db", "b-db", "c-db"))))
    assert catch_up.create is not None and catch_up.create.name != name and catch_up.status["appliedVersion"] == "3"


def test_a_canary_over_selected_secrets_is_checked_against_what_matched() -> None:
    raw = {"databases": {"selector": TENANTS}, "canary": {"count": 2}}
    assert parse_spec(spec(targets=raw)).problems == ()  # nothing matched yet: nothing to compare with
    m = fan_out(databases={"selector": TENANTS}, canary={"count": 2})
    assert with_selected(m, ("a-db", "b-db", "c-db")).spec.problems == ()
    [problem] = with_selected(m, ("a-db", "b-db")).spec.problems
    assert problem == "spec.targets.canary.count: 2 leaves none of the 2 targets for the rest"
