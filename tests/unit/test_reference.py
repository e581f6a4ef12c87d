"""docs/reference.md is generated from the CRD (hack/gen_reference.py), and the CRD describes
every field: what `kubectl explain` and editors show is the reference, and neither drifts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def load_generator() -> ModuleType:
    """hack/ is not a package: load the script as a module of its own."""
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "hack" / "gen_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


gen = load_generator()
CRD = yaml.safe_load(gen.CRD.read_text())


def test_reference_md_is_what_the_crd_and_the_template_make() -> None:
    expected = gen.render(CRD, gen.TEMPLATE.read_text())
    assert gen.DOC.read_text() == expected, "docs/reference.md differs from the CRD's descriptions: run make reference"


def test_every_field_of_the_schema_has_a_description() -> None:
    every = list(gen.fields(gen.root_schema(CRD), "SchemaMigration"))
    paths = {f.path for f in every}
    # The walk reaches items of lists, values of maps and the pod overrides' deepest fields.
    assert {
        "SchemaMigration.spec.podTemplate.tolerations[].tolerationSeconds",
        "SchemaMigration.spec.podTemplate.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm.topologyKey",
        "SchemaMigration.spec.podTemplate.podSecurityContext.supplementalGroups[]",
        "SchemaMigration.spec.podTemplate.resources.limits.*",
        "SchemaMigration.spec.env[].valueFrom.resourceFieldRef.divisor",
        "SchemaMigration.status.conditions[].lastTransitionTime",
    } <= paths
    # The API server refuses anything but `type: object` on metadata: it describes ObjectMeta itself.
    missing = [f.path for f in every if f.path != "SchemaMigration.metadata" and not f.schema.get("description")]
    assert missing == [], f"fields without a description: {missing}"


def test_every_field_has_a_row_in_the_reference() -> None:
    doc = gen.DOC.read_text()
    for top in ("spec", "status"):
        for field in list(gen.fields(gen.root_schema(CRD)["properties"][top], top))[1:]:
            assert f"| `{field.path}`" in doc


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "integer", "minimum": 0, "maximum": 20}, ["0 to 20"]),
        ({"type": "string", "maxLength": 63, "pattern": "^a|b$"}, ["at most 63 characters", "pattern `^a|b$`"]),
        (
            {"type": "array", "maxItems": 128, "x-kubernetes-validations": [{"rule": "x", "message": "say why"}]},
            ["at most 128 items", "say why"],
        ),
        ({"type": "string", "enum": ["Never", "Undo"]}, ["one of `Never`, `Undo`"]),
    ],
)
def test_bounds_say_what_the_api_server_checks(schema: dict[str, object], expected: list[str]) -> None:
    assert gen.bounds(schema) == expected


def test_a_cell_keeps_pipes_and_angle_brackets_visible() -> None:
    assert gen.cell("V<version>\n scripts `a|b` and <b>") == "V&lt;version> scripts `a\\|b` and &lt;b>"


def test_a_placeholder_naming_no_property_is_refused() -> None:
    with pytest.raises(ValueError, match="no property 'specs'"):
        gen.render(CRD, "# x\n<!-- fields: specs -->\n")
