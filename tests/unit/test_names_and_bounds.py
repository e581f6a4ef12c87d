"""Names that must fit Kubernetes (Job names, owner labels) and the bounds the operator checks
again in code, for specs an older CRD let through (pure: no cluster)."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import pytest

from lockgate.controller.handlers import _owner
from lockgate.controller.ledger import JobRequest, job_name
from lockgate.controller.manifests import job_manifest
from lockgate.controller.spec import (
    MAX_CONTRACT_DELAY,
    OWNER_ANNOTATION,
    OWNER_LABEL,
    owner_label,
    parse_duration,
    parse_spec,
)
from lockgate.shared.versions import Version
from tests.release_walk import migration

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
LONG_VERSION = ".".join(["1"] * 32)[:63].rstrip(".")  # 63 characters
NAME_253 = ".".join(["a" * 63] * 3) + "." + "b" * 61


def test_names_that_already_fit_keep_the_names_earlier_versions_gave_them() -> None:
    """Claims in status.history carry these names: an upgrade must not rename their Jobs."""
    m = migration()
    assert job_name(m, "expand", Version.parse("2026.11.21.1"), "abc123") == "shop-expand-2026-11-21-1-87c53"
    long = dataclasses.replace(m, name="a" * 80)
    assert job_name(long, "background", Version.parse("3"), "abc123") == f"{'a' * 44}-background-3-20e86"


@pytest.mark.parametrize("name", ["shop", "a" * 64, "shop.v2", NAME_253])
@pytest.mark.parametrize("version", ["3", "2026.11.21.1", LONG_VERSION])
@pytest.mark.parametrize("phase", ["expand", "background", "contract", "undo"])
def test_every_job_name_is_a_dns_label_of_at_most_63_characters(name: str, version: str, phase: str) -> None:
    m = dataclasses.replace(migration(), name=name)
    made = job_name(m, phase, Version.parse(version), "abc123")
    assert DNS_LABEL.fullmatch(made) and len(made) <= 63, made
    assert made == job_name(m, phase, Version.parse(version), "abc123")  # deterministic
    assert f"-{phase}-" in made


def test_long_versions_that_share_a_prefix_still_get_distinct_job_names() -> None:
    m = dataclasses.replace(migration(), name=NAME_253)
    names = {job_name(m, "expand", Version.parse(LONG_VERSION[:-1] + v), "a") for v in "2345"}
    assert len(names) == 4


def test_owner_label_is_the_name_when_it_fits_else_a_prefix_and_a_hash() -> None:
    assert owner_label("shop") == "shop" and owner_label("a" * 63) == "a" * 63
    cut = {owner_label(NAME_253[:-1] + c) for c in "bcd"}
    assert len(cut) == 3
    for value in cut:
        assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), value


def test_a_long_name_fits_the_job_and_its_pods_and_the_full_name_rides_in_an_annotation() -> None:
    m = dataclasses.replace(migration(version=LONG_VERSION), name=NAME_253)
    request = JobRequest("expand", m.spec.version, "a", job_name(m, "expand", m.spec.version, "a"), "i")
    job = job_manifest(m, request)
    pod = job["spec"]["template"]["metadata"]
    for labels in (job["metadata"]["labels"], pod["labels"]):
        assert all(len(v) <= 63 and LABEL_VALUE.fullmatch(v) for v in labels.values()), labels
        assert labels[OWNER_LABEL] == owner_label(NAME_253)
    assert job["metadata"]["annotations"][OWNER_ANNOTATION] == pod["annotations"][OWNER_ANNOTATION] == NAME_253
    assert _owner(job["metadata"]["labels"], job["metadata"]["annotations"]) == NAME_253


def test_jobs_made_before_the_annotation_are_found_by_their_label() -> None:
    assert _owner({OWNER_LABEL: "shop"}, {}) == "shop"


@pytest.mark.parametrize(("text", "seconds"), [("8760h", 8760 * 3600), ("1.5h", 5400), ("10m0.5s", 600.5)])
def test_durations_up_to_the_bound(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["8761h", "8760h1ms", "99999999999999999999h", "525601m"])
def test_a_duration_beyond_a_year_is_refused_with_what_to_do(text: str) -> None:
    with pytest.raises(ValueError, match=r"longer than 8760h .*shorten it, or set contract.requireApproval"):
        parse_duration(text)


def spec(**fields: object) -> dict[str, object]:
    return {
        "version": "3",
        "image": "registry/shop:3",
        "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
        **fields,
    }


def test_bounds_an_older_crd_let_through_become_problems_naming_the_field() -> None:
    parsed = parse_spec(spec(contract={"delay": "99999999999h"}, ttlSecondsAfterFinished=2**31))
    assert [p.split(":")[0] for p in parsed.problems] == ["spec.contract.delay", "spec.ttlSecondsAfterFinished"]
    assert "is not between 0 and 2147483647 seconds: use a value in that range" in parsed.problems[1]
    assert parsed.contract_delay == MAX_CONTRACT_DELAY  # contract never runs early, whatever reads it
    assert parse_spec(spec(ttlSecondsAfterFinished=2**31 - 1)).problems == ()
