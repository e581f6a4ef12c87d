"""Parsing a spec (controller/spec.py): the operator's defaults are the CRD's, and durations."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.controller.spec import migration_fields, parse_duration, parse_migration, parse_spec

CRD = Path(__file__).resolve().parents[2] / "crds" / "lockgate.dev_schemamigrations.yaml"
# Every optional block present but empty: structural defaulting fills fields of present objects only.
MINIMAL = {
    "version": "3",
    "image": "registry/app:3",
    "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
    "migrations": {},
    "expand": {},
    "background": {},
    "contract": {},
    "rollback": {},
    "gate": {},
}


def with_defaults(value: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """What the API server stores: each missing field with a `default` gets it, recursively."""
    for name, prop in (schema.get("properties") or {}).items():
        if name not in value and "default" in prop:
            value[name] = copy.deepcopy(prop["default"])
        if isinstance(value.get(name), dict):
            with_defaults(value[name], prop)
    return value


def test_parse_spec_applies_exactly_the_crd_defaults() -> None:
    version = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    defaulted = with_defaults(copy.deepcopy(MINIMAL), spec_schema)
    assert defaulted != MINIMAL  # the CRD does declare defaults
    assert parse_spec(copy.deepcopy(MINIMAL)) == parse_spec(defaulted)


@pytest.mark.parametrize(("text", "seconds"), [("0s", 0), ("90s", 90), ("10m", 600), ("1h30m", 5400), ("500ms", 0.5)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_bad_duration() -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_the_cached_fields_parse_as_the_whole_object() -> None:
    body = {
        "metadata": {
            "name": "shop",
            "namespace": "prod",
            "uid": "u1",
            "generation": 4,
            "resourceVersion": "77",
            "deletionTimestamp": "2026-12-06T07:00:00Z",
            "annotations": {
                "lockgate.dev/paused": "true",
                "lockgate.dev/retry": "2",
                "kubectl.kubernetes.io/last-applied-configuration": '{"spec": {}}',
            },
            "labels": {"team": "a"},
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": MINIMAL,
        "status": {"phase": "Expanded", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    cached = migration_fields(body)
    assert parse_migration(cached) == parse_migration(body)
    assert set(cached["metadata"]["annotations"]) == {"lockgate.dev/paused", "lockgate.dev/retry"}
    assert "managedFields" not in cached["metadata"] and "labels" not in cached["metadata"]
