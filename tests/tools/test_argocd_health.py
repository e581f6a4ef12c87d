"""The Argo CD health check of SchemaMigration (deploy/argocd/health.lua), tested the way Argo CD
tests its own: each object in tests/tools/testdata/argocd/ against the expected status and message in
health_test.yaml, run by Argo CD's engine (gopher-lua with Argo CD's libraries, in hack/health)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.controller.decide import decide
from tests.health_support import ARGOCD_CM, HEALTH_KEY, HEALTH_LUA, argocd_health
from tests.release_walk import Walked, observe, walk_release
from tests.unit.test_canary_waves import canary, finish

TESTDATA = Path(__file__).parent / "testdata" / "argocd"
CASES = yaml.safe_load((TESTDATA / "health_test.yaml").read_text())["tests"]


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((TESTDATA / name).read_text())


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj["status"]["conditions"]}


@pytest.mark.parametrize("case", CASES, ids=[c["inputPath"].removesuffix(".yaml") for c in CASES])
def test_health_of_each_testdata_object(case: dict[str, Any]) -> None:
    status, message = argocd_health(load(case["inputPath"]))
    assert (status, message) == (case["healthStatus"]["status"], case["healthStatus"]["message"])


@pytest.mark.parametrize("walked", list(walk_release()), ids=lambda w: w.row.step)
def test_health_of_each_step_of_a_release(walked: Walked) -> None:
    """The status decide() writes at each row of the release walk (tests/release_walk.py)."""
    status, message = argocd_health(walked.resource())
    assert status == walked.row.argocd and message
    if status == "Degraded":  # the reason a person reads in Argo CD is the Stalled message
        assert message == next(c for c in walked.status["conditions"] if c["type"] == "Stalled")["message"]


def test_every_testdata_object_has_an_expectation_and_every_verdict_is_covered() -> None:
    objects = {p.name for p in TESTDATA.glob("*.yaml")} - {"health_test.yaml"}
    assert objects == {c["inputPath"] for c in CASES}
    assert {c["healthStatus"]["status"] for c in CASES} == {"Healthy", "Progressing", "Degraded"}
    for case in CASES:
        obj = load(case["inputPath"])
        assert (obj["apiVersion"], obj["kind"]) == ("lockgate.dev/v1alpha1", "SchemaMigration")


@pytest.mark.parametrize(
    "name", ["healthy_while_contract_pending.yaml", "healthy_while_rolling_out.yaml", "healthy_awaiting_approval.yaml"]
)
def test_ready_does_not_wait_for_contract(name: str) -> None:
    obj = load(name)
    assert conditions(obj)["Contracted"]["status"] == "False" and conditions(obj)["Ready"]["status"] == "True"
    assert argocd_health(obj)[0] == "Healthy"


def test_a_spec_change_makes_a_healthy_object_progressing_until_the_operator_catches_up() -> None:
    obj = load("healthy.yaml")
    assert argocd_health(obj)[0] == "Healthy"
    obj["metadata"]["generation"] += 1  # spec edited; status is still the old generation's
    assert argocd_health(obj) == (
        "Progressing",
        f"Waiting for the lockgate operator to observe generation {obj['metadata']['generation']} (status is for generation {obj['status']['observedGeneration']})",
    )
    obj["status"]["observedGeneration"] += 1  # observed, but Ready still describes the old spec
    assert argocd_health(obj)[0] == "Progressing"
    for c in obj["status"]["conditions"]:
        c["observedGeneration"] += 1
    assert argocd_health(obj)[0] == "Healthy"


def test_stalled_wins_over_ready_and_its_message_is_reported() -> None:
    obj = load("healthy.yaml")
    stalled = conditions(obj)["Stalled"]
    stalled.update(status="True", reason="JobFailed", message="contract Job x failed: boom")
    assert argocd_health(obj) == ("Degraded", "contract Job x failed: boom")


def test_ready_false_without_stalled_is_progressing_not_healthy() -> None:
    obj = load("healthy.yaml")
    conditions(obj)["Ready"].update(status="False", reason="Expanding", message="expanding")
    assert argocd_health(obj)[0] == "Progressing"


@pytest.mark.parametrize(
    "status",
    [
        {"conditions": "not-a-list", "observedGeneration": 1},
        {"conditions": [None, "x", 3, {"type": "Ready"}], "observedGeneration": 1},
        {"conditions": [], "observedGeneration": 1, "phase": "Expanding"},
        {"observedGeneration": 1, "conditions": [{"type": "Stalled", "status": "True"}]},
    ],
)
def test_malformed_status_never_raises(status: dict[str, Any]) -> None:
    # A Lua error would show as an unknown health with a script error in Argo CD.
    obj = {
        "apiVersion": "lockgate.dev/v1alpha1",
        "kind": "SchemaMigration",
        "metadata": {"name": "x", "generation": 1},
        "status": status,
    }
    verdict, message = argocd_health(obj)
    assert verdict in {"Progressing", "Degraded"} and isinstance(message, str) and message


def test_argocd_cm_installs_exactly_health_lua_under_the_documented_key() -> None:
    cm = yaml.safe_load(ARGOCD_CM.read_text())
    assert (cm["apiVersion"], cm["kind"], cm["metadata"]["name"]) == ("v1", "ConfigMap", "argocd-cm")
    assert list(cm["data"]) == [HEALTH_KEY]
    assert cm["data"][HEALTH_KEY] == HEALTH_LUA.read_text(), (
        "argocd-cm.yaml's script differs from health.lua: paste health.lua into it, indented by 4"
    )
    assert argocd_health(load("degraded_stalled.yaml"), cm["data"][HEALTH_KEY])[0] == "Degraded"


def probe(script: str, obj: dict[str, Any]) -> str:
    """The message a probe script returns from Argo CD's engine (it reports Healthy to be read)."""
    status, message = argocd_health(obj, f'return {{status = "Healthy", message = {script}}}')
    assert status == "Healthy"
    return message


def test_the_object_reaches_lua_as_argo_cd_converts_it() -> None:
    value = {
        "list": [[1, 2], [], [{"k": "v"}]],
        "map": {"inner": {"deep": [True, False]}, "n": None},
        "num": 7,
        "float": 1.5,
        "text": "héllo",
    }
    parts = [
        "#obj.list", "#obj.list[1]", "obj.list[1][1]", "obj.list[1][2]", "#obj.list[2]", "obj.list[3][1].k",
        "obj.list[1][0]", "obj.map.inner.deep[1]", "obj.map.inner.deep[2]", "obj.map.n", "obj.num + 1",
        "obj.float * 2", "obj.text",
    ]  # fmt: skip
    script = "table.concat({" + ", ".join(f"tostring({p})" for p in parts) + '}, "|")'
    assert probe(script, value) == "3|2|1|2|0|v|nil|true|false|nil|8|3|héllo"


def test_the_engine_opens_only_argo_cds_libraries() -> None:
    # Argo CD opens base, table, package and an os with only time and date: no string or math.
    opened = ["_VERSION", "type(string)", "type(math)", "type(io)", "type(debug)", "type(require)"]
    opened += ["type(os.execute)", "type(os.getenv)", "type(os.time)", "type(os.date)", "tostring(require('os') == os)"]
    script = "table.concat({" + ", ".join(opened) + '}, " ")'
    assert probe(script, {}) == "Lua 5.1 nil nil nil nil function nil nil function function true"


def test_a_script_error_or_an_invalid_verdict_is_what_argo_cd_would_show() -> None:
    assert argocd_health({}, 'return {status = "Fine"}') == ("Unknown", "Lua returned an invalid health status")
    with pytest.raises(AssertionError, match="attempt to index"):
        argocd_health({}, 'return {status = string.format("%s", "x")}')


# the example Applications and the sync-wave pattern

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples" / "argocd"


def example_objects() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted((EXAMPLES / "shop").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def wave(obj: dict[str, Any]) -> int:
    return int(obj["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


def test_the_example_syncs_the_schema_before_the_gated_deployment() -> None:
    objects = {o["kind"]: o for o in example_objects()}
    assert set(objects) == {"ConfigMap", "SchemaMigration", "Deployment", "Service"}
    smig, deployment, scripts = objects["SchemaMigration"], objects["Deployment"], objects["ConfigMap"]
    assert wave(scripts) < wave(smig) < wave(deployment)
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["lockgate.dev/schema"] == smig["metadata"]["name"]
    assert template["metadata"]["annotations"]["lockgate.dev/requires-version"] == smig["spec"]["version"]
    assert {"conditionType": "lockgate.dev/schema-ready"} in template["spec"]["readinessGates"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert smig["spec"]["migrations"]["configMap"]["name"] == scripts["metadata"]["name"]
    assert smig["spec"]["database"]["urlFrom"]["secretKeyRef"] == {"name": "shop-db", "key": "url"}
    versions = {name.split("__")[0][1:] for name in scripts["data"]}
    assert smig["spec"]["version"] in versions  # the ConfigMap holds the scripts of the target version
    # No Secret in Git: the database URL is referenced, never committed.
    assert all(o["kind"] != "Secret" for o in example_objects())


def test_the_example_applications_point_at_real_paths_and_valid_chart_values() -> None:
    from tests.chart_support import render

    apps = {p.stem: yaml.safe_load(p.read_text()) for p in (EXAMPLES / "applications").glob("*.yaml")}
    assert set(apps) == {"lockgate", "shop"}
    for app in apps.values():
        assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
        assert (REPO_ROOT / app["spec"]["source"]["path"]).is_dir()
    assert apps["lockgate"]["spec"]["source"]["path"] == "charts/lockgate"
    assert apps["shop"]["spec"]["source"]["path"] == "examples/argocd/shop"
    # The operator Application's Helm values pass the chart's schema and render.
    docs = render(apps["lockgate"]["spec"]["source"]["helm"]["valuesObject"])
    assert any(d["kind"] == "Deployment" for d in docs)


def test_a_canary_awaiting_approval_reads_progressing_and_a_failed_canary_degraded() -> None:
    """Many tenants with a canary (tests/unit/test_canary_waves.py): the statuses decide() writes."""
    m = canary(approval=True)
    first = decide(observe(m))
    for decision, expected in ((finish(m, first), "Progressing"), (finish(m, first, failed=(0,)), "Degraded")):
        obj = {"apiVersion": "lockgate.dev/v1alpha1", "kind": "SchemaMigration", "metadata": {"generation": 1}}
        status, message = argocd_health(obj | {"status": decision.status})
        assert status == expected, message
        waits = "annotate lockgate.dev/approve-canary=3 to expand the other 3"
        assert waits in message if expected == "Progressing" else message.startswith("expand canary Job")
