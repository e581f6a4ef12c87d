"""The Helm chart charts/lockgate, with the real helm binary: lint, the manifests `helm template`
renders for the main value sets, the values schema, and the CRD copy."""

from __future__ import annotations

import re
import shutil
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart_support import CHART, REPO, helm, one, only, render, template

CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
APP_VERSION = CHART_META["appVersion"]

# The operator's permissions, exactly: a missing one breaks it, an extra one is not least privilege.
EXPECTED_RULES = {
    ("lockgate.dev", "schemamigrations"): {"get", "list", "watch", "patch"},
    ("lockgate.dev", "schemamigrations/status"): {"get", "patch", "update"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/status"): {"patch"},
    ("", "pods/log"): {"get"},
    ("apps", "deployments"): {"get", "list", "watch"},
    ("apps", "statefulsets"): {"get", "list", "watch"},
    ("apps", "daemonsets"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch", "list"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def permissions(rules: list[Mapping[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(group, resource) -> verbs, refusing anything that widens access in ways a flat map hides."""
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, (
            f"unexpected rule fields (resourceNames, nonResourceURLs...): {rule}"
        )
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


USER_ROLES = ("lg-lockgate-schemamigration-editor", "lg-lockgate-schemamigration-viewer")


def operator_role(docs: list[dict[str, Any]]) -> Mapping[str, Any]:
    """The operator's ClusterRole (the others are the user roles, for people)."""
    [role] = [r for r in only(docs, "ClusterRole") if r["metadata"]["name"] not in USER_ROLES]
    return role


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = deployment(docs)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return containers[0]


def env_of(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(docs)["env"]}


@pytest.fixture(scope="module")
def defaults() -> list[dict[str, Any]]:
    return render()


# lint


@pytest.mark.parametrize(
    "values",
    [None, {"watchNamespaces": ["a", "b"]}, {"serviceMonitor": {"enabled": True}}],
    ids=["defaults", "namespaced", "servicemonitor"],
)
def test_helm_lint_passes_strict(values: dict[str, Any] | None, tmp_path: Path) -> None:
    args = ["lint", str(CHART), "--strict"]
    if values:
        (tmp_path / "v.yaml").write_text(yaml.safe_dump(values))
        args += ["--values", str(tmp_path / "v.yaml")]
    result = helm(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[ERROR]" not in result.stdout and "[WARNING]" not in result.stdout


def test_helm_3_still_lints_and_renders_the_chart_as_helm_4_does() -> None:
    # Helm 4 is the tested client; Helm 3 still gets fixes, so the chart must keep working with it.
    assert helm("version", "--short", binary="helm3").stdout.startswith("v3.")
    assert helm("version", "--short").stdout.startswith("v4.")
    linted = helm("lint", str(CHART), "--strict", binary="helm3")
    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout and "[WARNING]" not in linted.stdout
    args = ("template", "lg", str(CHART), "--namespace", "lockgate-system")
    helm3_docs, helm4_docs = (list(yaml.safe_load_all(helm(*args, binary=b).stdout)) for b in ("helm3", "helm"))
    assert helm3_docs == helm4_docs  # the same manifests (Helm 4 only separates documents with blank lines)


def test_helm_lint_fails_on_bad_values(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text("replicas: -1\n")
    result = helm("lint", str(CHART), "--values", str(tmp_path / "v.yaml"), check=False)
    assert result.returncode != 0 and "/replicas" in result.stdout + result.stderr


def test_chart_metadata() -> None:
    assert (CHART_META["apiVersion"], CHART_META["name"], CHART_META["version"], CHART_META["appVersion"]) == (
        "v2",
        "lockgate",
        "0.1.0",
        "0.1.0",
    )


# the default (cluster-wide) install


def test_defaults_render_the_cluster_wide_install(defaults: list[dict[str, Any]]) -> None:
    assert sorted(d["kind"] for d in defaults) == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    for doc in defaults:
        labels = doc["metadata"]["labels"]
        assert all(label in labels for label in STANDARD_LABELS), f"{doc['kind']} lacks standard labels: {labels}"
        assert (
            labels["app.kubernetes.io/version"] == APP_VERSION
            and labels["helm.sh/chart"] == f"lockgate-{CHART_META['version']}"
        )
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == "lockgate-system"


def test_cluster_role_grants_exactly_the_operators_permissions(defaults: list[dict[str, Any]]) -> None:
    role = operator_role(defaults)
    assert permissions(role["rules"]) == EXPECTED_RULES
    binding = one(defaults, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    account = one(defaults, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "lockgate-system"}
    ]
    assert deployment(defaults)["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_the_permission_check_catches_a_missing_or_an_extra_permission(defaults: list[dict[str, Any]]) -> None:
    rules = operator_role(defaults)["rules"]
    missing = [
        dict(r, verbs=[v for v in r["verbs"] if v != "create"]) if r["resources"] == ["jobs"] else r for r in rules
    ]
    extra = [*rules, {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    assert permissions(missing) != EXPECTED_RULES and permissions(extra) != EXPECTED_RULES
    with pytest.raises(AssertionError):
        permissions([*rules, {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["x"], "verbs": ["get"]}])


def test_nothing_grants_or_renders_secrets(defaults: list[dict[str, Any]]) -> None:
    assert not only(defaults, "Secret")
    text = template().stdout
    assert "secrets" not in text and "password" not in text.lower()


def test_the_operator_pod_follows_the_restricted_pod_security_standard(defaults: list[dict[str, Any]]) -> None:
    pod = deployment(defaults)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    security = container(defaults)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert not security.get("privileged")
    # The one writable place: an emptyDir at /tmp.
    assert container(defaults)["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]


def test_probes_use_kopfs_health_endpoint_on_the_health_port(defaults: list[dict[str, Any]]) -> None:
    c = container(defaults)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert c[probe]["periodSeconds"] >= 1
    custom = render({"healthPort": 8181, "metricsPort": 9191})
    assert {p["name"]: p["containerPort"] for p in container(custom)["ports"]} == {"health": 8181, "metrics": 9191}
    assert env_of(custom)["LOCKGATE_HEALTH_PORT"] == "8181" and env_of(custom)["LOCKGATE_METRICS_PORT"] == "9191"


def test_the_operator_runs_lockgate_run_configured_through_its_environment(defaults: list[dict[str, Any]]) -> None:
    c = container(defaults)
    assert "command" not in c  # the image's ENTRYPOINT, lockgate
    assert c["args"] == ["run"]
    assert env_of(defaults) == {
        "LOCKGATE_HEALTH_PORT": "8080",
        "LOCKGATE_METRICS_PORT": "9090",
        "LOCKGATE_LOG_FORMAT": "plain",
        "LOCKGATE_POD_SECURITY": "restricted",
    }
    tuned = render({"logFormat": "json", "verbose": True, "extraEnv": [{"name": "TZ", "value": "UTC"}]})
    assert container(tuned)["args"] == ["run", "--verbose"]
    assert env_of(tuned)["LOCKGATE_LOG_FORMAT"] == "json" and env_of(tuned)["TZ"] == "UTC"


def test_default_image_is_the_app_version_and_resources_are_bounded(defaults: list[dict[str, Any]]) -> None:
    c = container(defaults)
    assert c["image"] == f"ghcr.io/lockgate/lockgate:{APP_VERSION}" and c["imagePullPolicy"] == "IfNotPresent"
    assert set(c["resources"]["requests"]) == {"cpu", "memory"} and "memory" in c["resources"]["limits"]
    assert deployment(defaults)["spec"]["replicas"] == 1


def test_custom_image_tag_digest_and_pull_policy() -> None:
    c = container(
        render(
            {
                "image": {
                    "repository": "registry.example.com:5000/team/lockgate",
                    "tag": "0.2.0-rc.1",
                    "pullPolicy": "Always",
                }
            }
        )
    )
    assert (c["image"], c["imagePullPolicy"]) == ("registry.example.com:5000/team/lockgate:0.2.0-rc.1", "Always")
    digest = "sha256:" + "ab" * 32
    assert (
        container(render({"image": {"repository": "lockgate", "digest": digest, "pullPolicy": "Never"}}))["image"]
        == f"lockgate@{digest}"
    )


def test_scheduling_and_pod_metadata_values_reach_the_pod() -> None:
    values = {
        "replicas": 3,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}]
                }
            }
        },
        "podAnnotations": {"example.com/team": "platform"},
        "podLabels": {"team": "platform"},
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "system-cluster-critical",
        "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}, "limits": {"cpu": 1, "memory": "300Mi"}},
    }
    d = deployment(render(values))
    pod = d["spec"]["template"]
    assert d["spec"]["replicas"] == 3
    for key in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets", "priorityClassName"):
        assert pod["spec"][key] == values[key]
    assert pod["metadata"]["annotations"] == values["podAnnotations"]
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert d["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "lockgate",
        "app.kubernetes.io/instance": "lg",
    }
    assert pod["spec"]["containers"][0]["resources"] == values["resources"]


def test_the_metrics_service_selects_the_operator_pods(defaults: list[dict[str, Any]]) -> None:
    service = one(defaults, "Service")
    pod_labels = deployment(defaults)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]


# watchNamespaces: namespaced RBAC


def test_watch_namespaces_grants_roles_in_those_namespaces_only() -> None:
    docs = render({"watchNamespaces": ["a", "b"]})
    # No ClusterRole for the operator (pods/log included): only the user roles, bound by no one.
    assert [r["metadata"]["name"] for r in only(docs, "ClusterRole")] == list(USER_ROLES)
    assert not only(docs, "ClusterRoleBinding")
    roles, bindings = only(docs, "Role"), only(docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["a", "b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["a", "b"]
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    for role in roles:
        assert permissions(role["rules"]) == EXPECTED_RULES
    for binding in bindings:
        role = next(r for r in roles if r["metadata"]["namespace"] == binding["metadata"]["namespace"])
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "lockgate-system"}]
    assert env_of(docs)["LOCKGATE_WATCH_NAMESPACES"] == "a,b"


def test_secret_selector_adds_list_on_secrets_only_where_the_other_rules_apply() -> None:
    """Opt-in (spec.targets.databases.selector): `list`, never get or watch, and no more widely."""
    with_selector = EXPECTED_RULES | {("", "secrets"): {"list"}}
    assert permissions(operator_role(render({"rbac": {"secretSelector": True}}))["rules"]) == with_selector
    roles = only(render({"rbac": {"secretSelector": True}, "watchNamespaces": ["a"]}), "Role")
    assert [(r["metadata"]["namespace"], permissions(r["rules"])) for r in roles] == [("a", with_selector)]


# roles for people


def test_user_roles_let_editors_and_viewers_at_schemamigrations_and_nothing_else(
    defaults: list[dict[str, Any]],
) -> None:
    roles = {r["metadata"]["name"]: r for r in only(defaults, "ClusterRole")}
    editor, viewer = (roles[name] for name in USER_ROLES)
    assert permissions(editor["rules"]) == {
        ("lockgate.dev", "schemamigrations"): {
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
        },
        ("lockgate.dev", "schemamigrations/status"): {"get"},
    }
    assert permissions(viewer["rules"]) == {
        ("lockgate.dev", "schemamigrations"): {"get", "list", "watch"},
        ("lockgate.dev", "schemamigrations/status"): {"get"},
    }
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k: v for k, v in editor["metadata"]["labels"].items() if k.startswith(aggregate)} == {
        f"{aggregate}admin": "true",
        f"{aggregate}edit": "true",
    }
    assert {k: v for k, v in viewer["metadata"]["labels"].items() if k.startswith(aggregate)} == {
        f"{aggregate}view": "true"
    }
    assert not any(b["roleRef"]["name"] in USER_ROLES for b in only(defaults, "ClusterRoleBinding"))


def test_user_roles_can_stay_out_of_the_default_roles_or_away() -> None:
    apart = only(render({"rbac": {"aggregateToDefaultRoles": False}}), "ClusterRole")
    assert len(apart) == 3 and not any("aggregate" in k for r in apart for k in r["metadata"]["labels"])
    assert [r["metadata"]["name"] for r in only(render({"rbac": {"userRoles": False}}), "ClusterRole")] == [
        "lg-lockgate"
    ]


# what a SchemaMigration's pod may ask for


@pytest.mark.parametrize("level", ["baseline", "privileged"])
def test_pod_security_reaches_the_operator(level: str) -> None:
    assert env_of(render({"podSecurity": level}))["LOCKGATE_POD_SECURITY"] == level


def test_rbac_create_false_renders_no_rbac() -> None:
    kinds = {d["kind"] for d in render({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops"}})}
    assert kinds == {"Deployment", "Service"}
    assert (
        deployment(render({"serviceAccount": {"create": False, "name": "ops"}}))["spec"]["template"]["spec"][
            "serviceAccountName"
        ]
        == "ops"
    )


# ServiceMonitor


def test_service_monitor_is_off_by_default_and_scrapes_the_metrics_service_when_on(
    defaults: list[dict[str, Any]],
) -> None:
    assert not only(defaults, "ServiceMonitor")
    docs = render({"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}, "interval": "15s"}})
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = one(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["lockgate-system"]}
    assert monitor["spec"]["endpoints"] == [
        {
            "port": "metrics",
            "path": "/metrics",
            "interval": "15s",
            "scrapeTimeout": "10s",
            "honorLabels": True,  # a SchemaMigration's namespace label, not exported_namespace
            "relabelings": [{"targetLabel": "job", "replacement": "lockgate"}],  # the alerts' job="lockgate"
        }
    ]


# the values schema


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"replicas": -1}, "/replicas"),
        ({"replicas": "two"}, "/replicas"),
        ({"replicas": 1.5}, "/replicas"),
        ({"logFormat": "xml"}, "/logFormat"),
        ({"watchNamespaces": ["Bad_NS"]}, "/watchNamespaces/0"),
        ({"watchNamespaces": ["a", "a"]}, "/watchNamespaces"),
        ({"watchNamespaces": "a,b"}, "/watchNamespaces"),
        ({"image": {"repository": ""}}, "/image/repository"),
        ({"image": {"repository": 5}}, "/image/repository"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"image": {"digest": "md5:abc"}}, "/image/digest"),
        ({"healthPort": 0}, "/healthPort"),
        ({"metricsPort": 70000}, "/metricsPort"),
        ({"metrics": {"service": {"port": 0}}}, "/metrics/service/port"),
        ({"serviceMonitor": {"interval": "soon"}}, "/serviceMonitor/interval"),
        ({"prometheusRule": {"enabled": "yes"}}, "/prometheusRule/enabled"),
        ({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "/grafanaDashboard/labels/grafana_dashboard"),
        ({"grafanaDashboard": {"namespace": "Monitoring"}}, "/grafanaDashboard/namespace"),
        ({"resources": {"requests": {"memory": "lots"}}}, "/resources/requests/memory"),
        ({"nodeSelector": {"pool": 1}}, "/nodeSelector/pool"),
        ({"replica": 2}, "additional properties 'replica' not allowed"),
        ({"image": {"tags": "x"}}, "additional properties 'tags' not allowed"),
        ({"podSecurity": "none"}, "/podSecurity"),
        ({"rbac": {"userRoles": "yes"}}, "/rbac/userRoles"),
    ],
    ids=lambda v: re.sub(r"\W+", "_", str(v)).strip("_")[:40],
)
def test_the_schema_refuses_bad_values_and_names_the_field(values: dict[str, Any], field: str) -> None:
    result = template(values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert field in result.stderr, result.stderr


def test_the_schema_accepts_edge_values() -> None:
    docs = render({"replicas": 0, "watchNamespaces": ["a" * 63, "team-1"], "healthPort": 1, "metricsPort": 65535})
    assert deployment(docs)["spec"]["replicas"] == 0
    assert len(only(docs, "Role")) == 2


def test_equal_health_and_metrics_ports_are_refused() -> None:
    result = template({"healthPort": 9090}, check=False)
    assert result.returncode != 0 and "healthPort and metricsPort must differ" in result.stderr


def test_every_value_in_values_yaml_is_described_by_the_schema() -> None:
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert set(values) <= set(schema["properties"])
    assert schema["additionalProperties"] is False


# CRDs and NOTES


def render_notes(tmp_path: Path) -> str:
    """NOTES.txt rendered by helm's engine without a cluster (`helm template` skips it and
    `helm install --dry-run` needs one): a copy of the chart renders it through `tpl`."""
    chart = tmp_path / "lockgate"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "notes-preview.yaml").write_text('notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n')
    result = helm(
        "template", "lg", str(chart), "--namespace", "lockgate-system", "--show-only", "templates/notes-preview.yaml"
    )
    return yaml.safe_load(result.stdout)["notes"]


def test_the_charts_crd_is_byte_identical_to_the_top_level_crd() -> None:
    top = sorted(p.name for p in (REPO / "crds").iterdir())
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == top
    for name in top:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
            f"charts/lockgate/crds/{name} drifted: cp crds/{name} charts/lockgate/crds/"
        )


def test_helm_installs_the_crd_with_the_chart() -> None:
    rendered = [d for d in yaml.safe_load_all(template(extra=["--include-crds"]).stdout) if d]
    crd = one(rendered, "CustomResourceDefinition")
    assert crd["metadata"]["name"] == "schemamigrations.lockgate.dev"
    assert crd["spec"]["names"]["shortNames"] == ["smig"]


def test_notes_say_how_to_check_the_install_and_give_a_valid_sample(tmp_path: Path) -> None:
    notes = render_notes(tmp_path)
    assert "kubectl -n lockgate-system rollout status deployment/lg-lockgate" in notes
    assert "kubectl wait --for=condition=Ready smig/app" in notes
    sample = yaml.safe_load(
        textwrap.dedent(notes.split("<<'YAML' | kubectl apply -f -\n", 1)[1].split("\n  YAML\n", 1)[0])
    )
    assert (sample["apiVersion"], sample["kind"]) == ("lockgate.dev/v1alpha1", "SchemaMigration")
    crd = yaml.safe_load((REPO / "crds" / "lockgate.dev_schemamigrations.yaml").read_text())
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(spec_schema["required"]) <= set(sample["spec"])
    assert set(sample["spec"]) <= set(spec_schema["properties"])
    assert sample["spec"]["image"] == f"ghcr.io/lockgate/lockgate:{APP_VERSION}"
    assert re.fullmatch(spec_schema["properties"]["version"]["pattern"], sample["spec"]["version"])


# Values documented as one row, not key by key.
DOCUMENTED_WHOLE = ("resources", "podSecurityContext", "securityContext", "livenessProbe", "readinessProbe", "labels")


def test_docs_list_every_value() -> None:
    def leaves(values: Mapping[str, Any], prefix: str = "") -> list[str]:
        found = []
        for key, value in values.items():
            path = f"{prefix}{key}"
            nested = isinstance(value, dict) and value and key not in DOCUMENTED_WHOLE
            found += leaves(value, f"{path}.") if nested else [path]
        return found

    docs = (REPO / "docs" / "helm.md").read_text()
    table = {
        cell.strip().strip("`")
        for line in docs.splitlines()
        if line.startswith("| `")
        for cell in line.split("|")[1].split(",")
    }
    missing = [key for key in leaves(yaml.safe_load((CHART / "values.yaml").read_text())) if key not in table]
    assert not missing, f"docs/helm.md's values table lacks {missing}"
