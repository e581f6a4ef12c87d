"""`kubectl explain` on the real API server reads the CRD's descriptions: spec, spec.contract, a
pod override, an env source and a status condition each explain themselves and their fields."""

from __future__ import annotations

import re
import subprocess
import time
from typing import Any

import pytest

EXPLAINED = [
    "smig.spec",
    "smig.spec.contract",
    "smig.spec.podTemplate.tolerations",
    "smig.spec.env.valueFrom.resourceFieldRef",
    "smig.status.conditions",
    "smig.status.conditions.reason",
]


def words(text: str) -> str:
    """kubectl wraps descriptions at its own width: compare them as words."""
    return " ".join(text.split())


def described(crd: dict[str, Any], what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema kubectl explains for `what` and the fields it lists (a list's are its items')."""
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for step in what.split(".")[1:]:
        schema = schema.get("items", schema)["properties"][step]
    return schema, schema.get("items", schema).get("properties") or {}


def explain(cluster: Any, what: str, expected: str) -> str:
    """`kubectl explain`, again until the API server publishes the CRD as installed (its OpenAPI
    document follows an update of the CRD within seconds)."""
    deadline = time.monotonic() + 60
    while True:
        result = subprocess.run(
            [str(cluster.kubectl), "--kubeconfig", str(cluster.kubeconfig), "explain", what],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if (result.returncode == 0 and expected in words(result.stdout)) or time.monotonic() > deadline:
            return result.stdout + result.stderr
        time.sleep(1)


@pytest.mark.parametrize("what", EXPLAINED)
def test_kubectl_explain_shows_the_description_of_the_field_and_of_each_of_its_fields(
    cluster: Any, crd: dict[str, Any], what: str
) -> None:
    schema, fields = described(crd, what)
    output = explain(cluster, what, words(schema["description"]))
    assert words(schema["description"]) in words(output), output
    for name, field in fields.items():
        assert re.search(rf"^\s+{name}\s+<", output, re.MULTILINE), f"{name} is not listed:\n{output}"
        assert words(field["description"]) in words(output), f"{what}.{name}'s description is missing:\n{output}"


def test_explain_contract_is_useful_on_its_own(cluster: Any, crd: dict[str, Any]) -> None:
    """What contract waits for, its default command, the delay's units, default and bound."""
    schema, _ = described(crd, "smig.spec.contract")
    output = words(explain(cluster, "smig.spec.contract", words(schema["description"])))
    for said in (
        "every gated workload rolled out",
        "lockgate migrate --phase contract --target VERSION",
        "units ms, s, m, h",
        "at most 8760h",
        "default 0s",
        "lockgate.dev/approve-contract",
    ):
        assert said in output, output
