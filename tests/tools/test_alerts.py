"""The chart's alerts and dashboard, checked by the real promtool (built by hack/build-promtool.sh):
the rules parse, each alert fires in its bad case after its `for` and stays silent when healthy and
just after trouble began (tests/tools/alerts_test.yaml), every runbook link lands on a section of
docs/troubleshooting.md, and every dashboard query parses and reads only metrics lockgate exports."""

from __future__ import annotations

import functools
import json
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import lockgate.controller.metrics  # noqa: F401  (registers the operator's metrics)
from tests.chart_support import CHART, REPO, one, render
from tests.promtool_support import promtool

CASES = Path(__file__).with_name("alerts_test.yaml")
RUNBOOKS = REPO / "docs" / "troubleshooting.md"
RUNBOOK_URL = "https://github.com/lockgate/lockgate/blob/main/docs/troubleshooting.md#"
# Grafana's own interval variables, which PromQL cannot parse, and what a query means with them.
GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "6h"}


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    """The PrometheusRule's spec as the chart renders it: a Prometheus rules file."""
    docs = render({"prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}}})
    rule = one(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["metadata"]["labels"]["release"] == "prometheus"
    return dict(rule["spec"])


def alerts(rules: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [r for group in rules["groups"] for r in group["rules"] if "alert" in r]


def test_the_chart_ships_the_rules_file_as_it_is_and_only_when_asked(rules: dict[str, Any]) -> None:
    assert rules == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert [d for d in render() if d["kind"] in ("PrometheusRule", "ConfigMap")] == []


def test_promtool_accepts_the_rendered_rules(rules: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    out = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert f"SUCCESS: {len(alerts(rules))} rules found" in out


def test_each_alert_fires_past_its_threshold_and_is_silent_when_healthy(rules: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    shutil.copy(CASES, tmp_path / CASES.name)
    out = promtool("test", "rules", CASES.name, cwd=tmp_path)
    assert "SUCCESS" in out
    # Every alert has a case where it fires and one where it must not.
    checks = [c for test in yaml.safe_load(CASES.read_text())["tests"] for c in test["alert_rule_test"]]
    names = {a["alert"] for a in alerts(rules)}
    assert {c["alertname"] for c in checks if c["exp_alerts"]} == names
    assert {c["alertname"] for c in checks if not c["exp_alerts"]} == names


def test_each_alert_says_how_bad_what_and_where_the_runbook_is(rules: dict[str, Any]) -> None:
    anchors = {anchor(line) for line in RUNBOOKS.read_text().splitlines() if line.startswith("#")}
    for alert in alerts(rules):
        assert alert["labels"]["severity"] in ("critical", "warning"), alert["alert"]
        assert {"summary", "description", "runbook_url"} <= alert["annotations"].keys(), alert["alert"]
        url = alert["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_URL) and url.removeprefix(RUNBOOK_URL) in anchors, url
        assert set(metric_names(alert["expr"])) <= exported_metrics(), alert["alert"]


def test_the_dashboard_ships_for_the_grafana_sidecar_and_its_queries_parse(tmp_path: Path) -> None:
    docs = render({"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Databases"}}})
    config_map = one(docs, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Databases"}
    dashboard = json.loads(config_map["data"]["lockgate.json"])
    assert dashboard == json.loads((CHART / "files" / "dashboard.json").read_text())
    queries = list(exprs(dashboard))
    assert len(queries) >= 15
    recorded = [{"record": f"lockgate:dashboard_query_{i}", "expr": promql(q)} for i, q in enumerate(queries)]
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    assert f"SUCCESS: {len(queries)} rules found" in promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    for query in queries:
        assert set(metric_names(query)) <= exported_metrics(), query


def exprs(value: Any) -> Iterator[str]:
    """Every `expr` of a Grafana dashboard, wherever it sits (panel targets, rows' panels)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "expr" and isinstance(item, str):
                yield item
            else:
                yield from exprs(item)
    elif isinstance(value, list):
        for item in value:
            yield from exprs(item)


def promql(query: str) -> str:
    for variable, duration in GRAFANA_INTERVALS.items():
        query = query.replace(variable, duration)
    return query.replace("$namespace", ".*")


def metric_names(expr: str) -> list[str]:
    return re.findall(r"\blockgate_[a-z_]+", expr)


@functools.cache
def exported_metrics() -> frozenset[str]:
    """The series names the operator's registry exports (the families the tests' process registered)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return frozenset(
        f"{family.name}{suffix}"
        for family in REGISTRY.collect()
        if family.name.startswith("lockgate_")
        for suffix in suffixes.get(family.type, ("",))
    )


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
