"""The Kubernetes test harness (tests/cluster/): its pure core, then the harness itself on
the real API server: CRD validation, Jobs running real commands, readiness gates holding a
rollout, garbage collection, RBAC, init containers, pod deletion and `up`/`down`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.cluster import podspec, podstatus
from tests.cluster.binaries import REPO
from tests.cluster.clusters import LocalCluster
from tests.cluster.fixtures import namespace_name
from tests.cluster.kube import Kube, deployment_rolled_out, wait_deleted, watch_until
from tests.cluster.logserver import select_log
from tests.cluster.node import node_heartbeat, node_is_ready, node_status
from tests.cluster.nodeagent import exit_code

GATE = "lockgate.dev/schema-ready"

# --- the pure core ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "real"),
    [
        ("lockgate:dev", True),
        ("ghcr.io/lockgate/lockgate:0.1.0", True),
        ("localhost:5000/lockgate", True),
        ("ghcr.io/lockgate/lockgate@sha256:abc", True),
        ("ghcr.io/lockgate/lockgate-docs:1", False),
        ("lockgate/app:1", False),
        ("registry.k8s.io/pause:3.10", False),
    ],
)
def test_real_images_default_to_repositories_named_lockgate(image: str, real: bool) -> None:
    assert podspec.runs_for_real(image, podspec.DEFAULT_REAL_IMAGES) is real


def test_real_image_patterns_are_configurable() -> None:
    assert podspec.runs_for_real("example.com/migrator:7", ["*/migrator"])
    assert podspec.runs_for_real("example.com/migrator:7", ["example.com/migrator:7"])
    assert not podspec.runs_for_real("lockgate:dev", ["*/migrator"])


def test_variable_references_expand_like_the_kubelet() -> None:
    env = {"VERSION": "1.2", "PHASE": "expand"}
    assert podspec.expand("--target $(VERSION) --phase=$(PHASE)", env) == "--target 1.2 --phase=expand"
    assert podspec.expand("$$(VERSION) $(UNKNOWN)", env) == "$(VERSION) $(UNKNOWN)"


POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "a", "tier": "db"}},
    "spec": {"nodeName": "n1", "serviceAccountName": "sa"},
    "status": {"podIP": "127.0.0.1"},
}


def lookup_of(objects: dict[tuple[str, str], dict[str, bytes]]) -> podspec.Lookup:
    return lambda kind, name: objects.get((kind, name))


def test_container_env_resolves_references_in_order() -> None:
    lookup = lookup_of({("Secret", "db"): {"url": b"postgresql://x"}, ("ConfigMap", "cfg"): {"A": b"1", "B": b"2"}})
    container = {
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
            {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
            {"name": "GREETING", "value": "$(POD) in $(CFG_A)"},
        ],
    }
    env = podspec.container_env(POD, container, lookup, {"PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "CFG_A": "1",
        "CFG_B": "2",
        "DATABASE_URL": "postgresql://x",
        "POD": "p",
        "TIER": "db",
        "GREETING": "p in 1",
    }


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ({"secretKeyRef": {"name": "absent", "key": "k"}}, 'secret "absent" not found'),
        ({"secretKeyRef": {"name": "db", "key": "nope"}}, "couldn't find key nope in Secret ns/db"),
        ({"resourceFieldRef": {"resource": "limits.cpu"}}, "unsupported valueFrom"),
    ],
)
def test_container_env_refuses_what_it_cannot_resolve(source: dict, error: str) -> None:
    container = {"env": [{"name": "X", "valueFrom": source}]}
    with pytest.raises(podspec.ConfigError, match=error):
        podspec.container_env(POD, container, lookup_of({("Secret", "db"): {"url": b"x"}}), {})


def test_argv_uses_the_image_entrypoint_only_without_a_command() -> None:
    assert podspec.container_argv({"args": ["migrate", "$(V)"]}, {"V": "2"}, ["lockgate"]) == [
        "lockgate",
        "migrate",
        "2",
    ]
    assert podspec.container_argv({"command": ["sh", "-c"], "args": ["true"]}, {}, ["lockgate"]) == ["sh", "-c", "true"]
    with pytest.raises(podspec.ConfigError, match="no command"):
        podspec.container_argv({}, {}, [])


def test_volume_content_projects_items_and_modes() -> None:
    lookup = lookup_of({("ConfigMap", "m"): {"V1__a.sql": b"create", "x": b"y"}, ("Secret", "s"): {"k": b"v"}})
    configmap = podspec.volume_content(
        POD,
        {
            "name": "m",
            "configMap": {"name": "m", "items": [{"key": "V1__a.sql", "path": "sql/V1__a.sql", "mode": 0o600}]},
        },
        lookup,
        None,
    )  # type: ignore[arg-type]
    assert configmap == podspec.Files({"sql/V1__a.sql": (b"create", 0o600)})
    secret = podspec.volume_content(
        POD, {"name": "s", "secret": {"secretName": "s", "defaultMode": 0o400}}, lookup, None
    )  # type: ignore[arg-type]
    assert secret == podspec.Files({"k": (b"v", 0o400)})
    assert podspec.volume_content(
        POD, {"name": "o", "secret": {"secretName": "absent", "optional": True}}, lookup, None
    ) == podspec.Files({})  # type: ignore[arg-type]
    with pytest.raises(podspec.ConfigError, match="keys"):
        podspec.volume_content(
            POD, {"name": "m", "configMap": {"name": "m", "items": [{"key": "missing", "path": "p"}]}}, lookup, None
        )  # type: ignore[arg-type]
    with pytest.raises(podspec.ConfigError, match="unsupported volume type"):
        podspec.volume_content(POD, {"name": "v", "persistentVolumeClaim": {"claimName": "c"}}, lookup, None)  # type: ignore[arg-type]


def test_projected_service_account_volume() -> None:
    lookup = lookup_of({("ConfigMap", "kube-root-ca.crt"): {"ca.crt": b"PEM"}})
    requests = []

    def token(audience: str, seconds: int) -> str:
        requests.append((audience, seconds))
        return "jwt"

    volume = {
        "name": "kube-api-access",
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
                            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        ]
                    }
                },
            ],
        },
    }
    files = podspec.volume_content(POD, volume, lookup, token)
    assert files == podspec.Files(
        {
            "token": (b"jwt", 0o644),
            "ca.crt": (b"PEM", 0o644),
            "namespace": (b"ns", 0o644),
            "labels": (b'app="a"\ntier="db"', 0o644),
        }
    )
    assert requests == [("", 3607)]


def test_file_made_volumes_are_mounted_read_only() -> None:
    volumes = {"cfg": podspec.Files(), "scratch": podspec.EmptyDir()}
    container = {
        "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}, {"name": "scratch", "mountPath": "/s", "subPath": "x"}]
    }
    assert podspec.container_mounts(container, volumes) == [
        podspec.Mount("cfg", "/cfg", "", True),
        podspec.Mount("scratch", "/s", "x", False),
    ]


def test_termination_message_falls_back_to_logs_only_when_asked_and_failed() -> None:
    log = b"".join(b"line %d\n" % i for i in range(100))
    assert podspec.termination_message(b"x" * 5000, "File", True, log) == "x" * 4096
    assert podspec.termination_message(b"", "File", True, log) == ""
    assert podspec.termination_message(b"", "FallbackToLogsOnError", False, log) == ""
    fallback = podspec.termination_message(b"", "FallbackToLogsOnError", True, log)
    assert fallback.startswith("line 20") and fallback.endswith("line 99")


def state(name: str, **changes: object) -> podstatus.ContainerState:
    return podstatus.ContainerState(name, "img", **changes)  # type: ignore[arg-type]


def test_init_containers_start_one_at_a_time_before_the_main_ones() -> None:
    init = [state("i1"), state("i2")]
    main = [state("a"), state("b")]
    assert podstatus.to_start(init, main, 0) == ["i1"]
    init[0] = state("i1", state="running")
    assert podstatus.to_start(init, main, 0) == []
    init[0] = state("i1", state="terminated", exit_code=0)
    assert podstatus.to_start(init, main, 0) == ["i2"]
    init[1] = state("i2", state="terminated", exit_code=0)
    assert podstatus.to_start(init, main, 0) == ["a", "b"]


@pytest.mark.parametrize(
    ("policy", "code", "phase"),
    [
        ("Never", 0, "Succeeded"),
        ("Never", 3, "Failed"),
        ("OnFailure", 0, "Succeeded"),
        ("OnFailure", 3, "Running"),
        ("Always", 0, "Running"),
    ],
)
def test_exit_and_restart_policy_decide_the_phase(policy: str, code: int, phase: str) -> None:
    running = podstatus.started(state("main"), 10.0, ready=True)
    after = podstatus.exited(running, code, "", 11.0, policy, init=False)
    assert podstatus.pod_phase([], [after]) == phase


def test_a_restart_backs_off_and_counts() -> None:
    first = podstatus.exited(podstatus.started(state("main"), 10.0, True), 1, "boom", 11.0, "OnFailure", init=False)
    assert (first.state, first.reason, first.retry_at) == ("waiting", "CrashLoopBackOff", 11.5)
    assert first.last_terminated == {
        "exitCode": 1,
        "reason": "Error",
        "finishedAt": "1970-01-01T00:00:11Z",
        "startedAt": "1970-01-01T00:00:10Z",
        "message": "boom",
    }
    assert podstatus.to_start([], [first], 11.4) == [] and podstatus.to_start([], [first], 11.5) == ["main"]
    second = podstatus.started(first, 11.5, True)
    assert second.restart_count == 1
    assert podstatus.exited(second, 1, "", 12.0, "OnFailure", init=False).retry_at == 13.0


def test_a_failed_init_container_fails_a_never_restarting_pod() -> None:
    failed = podstatus.exited(podstatus.started(state("wait"), 1.0, True), 2, "", 2.0, "Never", init=True)
    assert podstatus.pod_phase([failed], [state("main")]) == "Failed"
    retried = podstatus.exited(podstatus.started(state("wait"), 1.0, True), 2, "", 2.0, "Always", init=True)
    assert podstatus.pod_phase([retried], [state("main")]) == "Pending"


SPEC_WITH_GATE = {"containers": [{"name": "app"}], "readinessGates": [{"conditionType": GATE}]}


def conditions_of(conditions: list[dict]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c.get("reason", "")) for c in conditions}


def test_ready_waits_for_every_readiness_gate() -> None:
    ready = [state("app", state="running", ready=True)]
    missing = podstatus.owned_conditions(SPEC_WITH_GATE, [], ready, [], "Running", 0)
    assert conditions_of(missing)["Ready"] == ("False", "ReadinessGatesNotReady")
    assert conditions_of(missing)["ContainersReady"] == ("True", "")
    assert 'readiness gate "lockgate.dev/schema-ready" does not exist' in missing[2]["message"]
    closed = podstatus.owned_conditions(SPEC_WITH_GATE, [], ready, [{"type": GATE, "status": "False"}], "Running", 0)
    assert 'is not "True", but False' in closed[2]["message"]
    opened = podstatus.owned_conditions(SPEC_WITH_GATE, [], ready, [{"type": GATE, "status": "True"}], "Running", 0)
    assert conditions_of(opened)["Ready"] == ("True", "")
    unready = podstatus.owned_conditions(
        SPEC_WITH_GATE, [], [state("app", state="running")], [{"type": GATE, "status": "True"}], "Running", 0
    )
    assert conditions_of(unready)["Ready"] == ("False", "ContainersNotReady")


def test_condition_transition_times_only_move_on_a_change() -> None:
    ready = [state("app", state="running", ready=True)]
    earlier = [{"type": "ContainersReady", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    again = podstatus.owned_conditions({"containers": [{"name": "app"}]}, [], ready, earlier, "Running", 100.0)
    assert again[1]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    changed = podstatus.owned_conditions(
        {"containers": [{"name": "app"}]}, [], [state("app")], earlier, "Pending", 100.0
    )
    assert changed[1]["lastTransitionTime"] == "1970-01-01T00:01:40Z"


def test_status_patch_owns_only_the_kubelet_conditions() -> None:
    pod = {
        "metadata": {"uid": "u1"},
        "spec": SPEC_WITH_GATE,
        "status": {"conditions": [{"type": GATE, "status": "True"}, {"type": "PodScheduled", "status": "True"}]},
    }
    patch = podstatus.status_patch(pod, [], [state("app", state="running", ready=True, started_at=1.0)], 1.0, 2.0)
    assert [c["type"] for c in patch["status"]["conditions"]] == ["Initialized", "ContainersReady", "Ready"]
    assert patch["metadata"] == {"uid": "u1"}
    assert patch["status"]["podIP"] == patch["status"]["hostIP"] == "127.0.0.1"
    assert patch["status"]["containerStatuses"][0]["state"] == {"running": {"startedAt": "1970-01-01T00:00:01Z"}}


def test_node_is_ready_once_the_not_ready_taint_is_gone() -> None:
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert node_is_ready(ready)
    assert not node_is_ready(
        {**ready, "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}}
    )
    assert not node_is_ready({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})


def test_node_heartbeats_leave_transition_times_alone() -> None:
    registered = node_status(10250, 0.0)["status"]
    assert {c["type"]: c["lastTransitionTime"] for c in registered["conditions"]}["Ready"] == "1970-01-01T00:00:00Z"
    assert registered["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    beat = node_heartbeat(60.0)["status"]["conditions"]
    assert all("lastTransitionTime" not in c and c["lastHeartbeatTime"] == "1970-01-01T00:01:00Z" for c in beat)


def test_small_helpers() -> None:
    assert select_log(b"a\nb\nc\n", 2, None) == b"b\nc\n"
    assert select_log(b"a\nb\nc\n", None, 3) == b"a\nb"
    assert exit_code(-9) == 137 and exit_code(3) == 3
    name = namespace_name("test_Job[real-1]" + "x" * 80)
    assert len(name) <= 63 and name.startswith("test-job-real-1-") and name[-7] == "-"


# --- the harness on the real API server --------------------------------------------------------


def has_condition(obj: object, type_: str, status: str = "True") -> bool:
    return any(c.type == type_ and c.status == status for c in (obj.status.conditions or []))  # type: ignore[attr-defined]


def run_pod(kube: Kube, namespace: str, spec: dict, name: str = "p", timeout: float = 60) -> client.V1Pod:
    """Create a pod and return it once it has finished."""
    kube.core.create_namespaced_pod(namespace, {"metadata": {"name": name}, "spec": {"restartPolicy": "Never", **spec}})
    return watch_until(
        kube.core.list_namespaced_pod,
        lambda p: p.status.phase in ("Succeeded", "Failed"),
        timeout=timeout,
        namespace=namespace,
        field_selector=f"metadata.name={name}",
    )


def job_manifest(name: str, image: str, command: list[str], **spec: object) -> dict:
    template = {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": image, "command": command}]}
    }
    return {"metadata": {"name": name}, "spec": {"backoffLimit": 0, "template": template, **spec}}


@pytest.mark.timeout(120)
def test_crd_structural_schema_rejects_invalid_objects(kube: Kube, namespace: str) -> None:
    group = f"h{uuid.uuid4().hex[:8]}.test.lockgate.dev"
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["version"],
                "properties": {
                    "version": {"type": "string", "pattern": r"^\d+(\.\d+)*$"},
                    "replicas": {"type": "integer", "minimum": 1},
                },
            }
        },
    }
    crd = {
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                }
            ],
        },
    }
    kube.apiextensions.create_custom_resource_definition(crd)
    try:
        watch_until(
            kube.apiextensions.list_custom_resource_definition,
            lambda c: has_condition(c, "Established"),
            field_selector=f"metadata.name=widgets.{group}",
        )

        def create(spec: dict) -> dict:
            body = {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": f"w{uuid.uuid4().hex[:6]}"},
                "spec": spec,
            }
            return kube.custom.create_namespaced_custom_object(group, "v1", namespace, "widgets", body)

        created = create({"version": "1.10", "replicas": 2, "unknown": "pruned"})
        assert created["spec"] == {"version": "1.10", "replicas": 2}  # unknown fields pruned
        with pytest.raises(ApiException) as invalid:
            create({"version": "one", "replicas": 0})
        assert invalid.value.status == 422
        assert "spec.version" in invalid.value.body and "spec.replicas" in invalid.value.body
    finally:
        kube.apiextensions.delete_custom_resource_definition(f"widgets.{group}")


@pytest.mark.timeout(120)
def test_jobs_run_real_commands_and_report_their_end(kube: Kube, namespace: str, cluster: LocalCluster) -> None:
    script = "import sys; open('/dev/termination-log', 'w').write('{\"applied\": [\"1.0\"]}'); print('migrating'); sys.exit(int(sys.argv[1]))"
    kube.batch.create_namespaced_job(namespace, job_manifest("ok", cluster.real_image, ["python", "-c", script, "0"]))
    kube.batch.create_namespaced_job(
        namespace, job_manifest("fails", cluster.real_image, ["python", "-c", script, "3"])
    )

    def finished(name: str) -> client.V1Job:
        return watch_until(
            kube.batch.list_namespaced_job,
            lambda j: has_condition(j, "Complete") or has_condition(j, "Failed"),
            namespace=namespace,
            field_selector=f"metadata.name={name}",
        )

    assert has_condition(finished("ok"), "Complete")
    assert has_condition(finished("fails"), "Failed")
    for name, code in (("ok", 0), ("fails", 3)):
        [pod] = kube.core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={name}").items
        terminated = pod.status.container_statuses[0].state.terminated
        assert (terminated.exit_code, terminated.message) == (code, '{"applied": ["1.0"]}')
        assert kube.core.read_namespaced_pod_log(pod.metadata.name, namespace) == "migrating\n"


@pytest.mark.timeout(120)
def test_a_missing_command_fails_the_container_with_a_reason(kube: Kube, namespace: str, cluster: LocalCluster) -> None:
    pod = run_pod(
        kube,
        namespace,
        {"containers": [{"name": "main", "image": cluster.real_image, "command": ["no-such-command-xyz"]}]},
    )
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Failed"
    assert terminated.exit_code != 0 and "no-such-command-xyz" in terminated.message


def waiting_reason(pod: client.V1Pod) -> str:
    statuses = pod.status.container_statuses or []
    return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else ""


@pytest.mark.timeout(120)
def test_a_pod_waits_for_a_missing_secret_and_an_unsupported_one_says_why(
    kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}]
    command = ["sh", "-c", 'echo -n "$TOKEN" > /dev/termination-log']
    kube.core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "waits"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": cluster.real_image, "command": command, "env": env}],
            },
        },
    )
    watch_until(
        kube.core.list_namespaced_pod,
        lambda p: waiting_reason(p) == "CreateContainerConfigError",
        namespace=namespace,
        field_selector="metadata.name=waits",
    )
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "later"}, "string_data": {"token": "s3cret"}})
    done = watch_until(
        kube.core.list_namespaced_pod,
        lambda p: p.status.phase == "Succeeded",
        namespace=namespace,
        field_selector="metadata.name=waits",
    )
    assert done.status.container_statuses[0].state.terminated.message == "s3cret"
    if not cluster.local:
        return  # a real node may well support the volume below
    kube.core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "unsupported"},
            "spec": {
                "containers": [{"name": "main", "image": cluster.simulated_image}],
                "volumes": [
                    {"name": "data", "nfs": {"server": "127.0.0.1", "path": "/data"}}
                ],  # never mounted: not supported
            },
        },
    )
    stuck = watch_until(
        kube.core.list_namespaced_pod,
        lambda p: "unsupported volume type" in str(p.status.container_statuses),
        namespace=namespace,
        field_selector="metadata.name=unsupported",
    )
    assert stuck.status.phase == "Pending" and waiting_reason(stuck) == "ContainerCreating"


@pytest.mark.timeout(120)
def test_a_container_without_command_runs_the_image_entrypoint(
    kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    pod = run_pod(kube, namespace, {"containers": [{"name": "main", "image": cluster.real_image, "args": ["--help"]}]})
    assert pod.status.phase == "Succeeded"
    assert "usage: lockgate" in kube.core.read_namespaced_pod_log("p", namespace)


@pytest.mark.timeout(120)
def test_a_volume_over_the_checkouts_parent_does_not_hide_the_runtime(
    kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    # The chart mounts an emptyDir at /tmp; a checkout under /tmp (as CI's may be) must still run.
    if not cluster.local:
        pytest.skip("needs this host's node agent")
    parent = str(Path(__file__).resolve().parents[1].parent)
    container = {
        "name": "main",
        "image": cluster.real_image,
        "args": ["--version"],
        "volumeMounts": [{"name": "scratch", "mountPath": parent}],
    }
    pod = run_pod(kube, namespace, {"containers": [container], "volumes": [{"name": "scratch", "emptyDir": {}}]})
    assert pod.status.phase == "Succeeded", kube.core.read_namespaced_pod_log("p", namespace)
    assert kube.core.read_namespaced_pod_log("p", namespace).startswith("lockgate ")


@pytest.mark.timeout(120)
def test_env_and_volumes_reach_the_process(kube: Kube, namespace: str, cluster: LocalCluster) -> None:
    kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "db"}, "data": {"url": base64.b64encode(b"postgresql://db/app").decode()}}
    )
    kube.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "migrations"}, "data": {"V1__init.sql": "create table t ();", "other": "x"}}
    )
    script = (
        "import json, os; from kubernetes import client, config; config.load_incluster_config();"
        "version = client.VersionApi().get_code().git_version;"
        "files = sorted(os.listdir('/migrations'));"
        "sql = open('/migrations/sql/V1__init.sql').read();"
        "json.dump([os.environ['DATABASE_URL'], os.environ['POD_NAME'], files, sql, version, os.getcwd()], open('/dev/termination-log', 'w'))"
    )
    container = {
        "name": "main",
        "image": cluster.real_image,
        "command": ["python", "-c", script],
        "workingDir": "/tmp",
        "env": [
            {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "volumeMounts": [{"name": "migrations", "mountPath": "/migrations"}],
    }
    volume = {
        "name": "migrations",
        "configMap": {"name": "migrations", "items": [{"key": "V1__init.sql", "path": "sql/V1__init.sql"}]},
    }
    pod = run_pod(kube, namespace, {"containers": [container], "volumes": [volume]}, name="reader")
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0, terminated.message
    assert json.loads(terminated.message) == [
        "postgresql://db/app",
        "reader",
        ["sql"],
        "create table t ();",
        "v1.35.4",
        "/tmp",
    ]


@pytest.mark.timeout(120)
def test_init_containers_run_first_in_order(kube: Kube, namespace: str, cluster: LocalCluster) -> None:
    def step(name: str, command: str) -> dict:
        # /tmp hides the host's /tmp, where the local cluster keeps the other volumes' files.
        return {
            "name": name,
            "image": cluster.real_image,
            "command": ["sh", "-c", command],
            "volumeMounts": [{"name": "work", "mountPath": "/tmp"}],
        }

    spec = {
        "initContainers": [step("first", "echo -n 1 > /tmp/order"), step("second", "echo -n 2 >> /tmp/order")],
        "containers": [step("main", "echo -n 3 >> /tmp/order; cat /tmp/order > /dev/termination-log")],
        "volumes": [{"name": "work", "emptyDir": {}}],
    }
    pod = run_pod(kube, namespace, spec)
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.message == "123"
    assert [s.state.terminated.reason for s in pod.status.init_container_statuses] == ["Completed", "Completed"]
    assert has_condition(pod, "Initialized")


@pytest.mark.timeout(120)
def test_pod_deletion_stops_the_process(kube: Kube, namespace: str, cluster: LocalCluster, tmp_path: Path) -> None:
    if not cluster.local:
        pytest.skip("watches the process on this host")
    tmp_path.chmod(0o777)
    script = (
        "import os, signal, sys, time;"
        "signal.signal(signal.SIGTERM, lambda *_: (open('/out/stopped', 'w').write('SIGTERM'), sys.exit(0)));"
        "open('/out/pid', 'w').write(str(os.getpid())); time.sleep(600)"
    )
    container = {
        "name": "main",
        "image": cluster.real_image,
        "command": ["python", "-c", script],
        "volumeMounts": [{"name": "out", "mountPath": "/out"}],
    }
    spec = {
        "containers": [container],
        "volumes": [{"name": "out", "hostPath": {"path": str(tmp_path)}}],
        "terminationGracePeriodSeconds": 5,
    }
    kube.core.create_namespaced_pod(namespace, {"metadata": {"name": "sleeper"}, "spec": spec})
    watch_until(
        kube.core.list_namespaced_pod,
        lambda p: p.status.phase == "Running",
        namespace=namespace,
        field_selector="metadata.name=sleeper",
    )
    deadline = time.monotonic() + 10
    while not (tmp_path / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int((tmp_path / "pid").read_text())
    os.kill(pid, 0)  # running

    started = time.monotonic()
    kube.core.delete_namespaced_pod("sleeper", namespace)
    wait_deleted(kube.core.list_namespaced_pod, "sleeper", timeout=30, namespace=namespace)
    assert time.monotonic() - started < 5, "a process that exits on SIGTERM should not wait out the grace period"
    assert (tmp_path / "stopped").read_text() == "SIGTERM"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def open_gate(kube: Kube, namespace: str, pod: client.V1Pod) -> None:
    """What the operator does: patch the gate's condition through pods/status."""
    body = {
        "status": {
            "conditions": [
                {"type": GATE, "status": "True", "reason": "SchemaReady", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]
        }
    }
    kube.core.patch_namespaced_pod_status(pod.metadata.name, namespace, body)


def gated_pods(kube: Kube, namespace: str, template_hash: str | None = None) -> list[client.V1Pod]:
    """Pods whose containers are ready but whose gate is not open yet."""
    selector = "app=web" + (f",pod-template-hash={template_hash}" if template_hash else "")
    return [
        p
        for p in kube.core.list_namespaced_pod(namespace, label_selector=selector).items
        if p.metadata.deletion_timestamp is None and has_condition(p, "ContainersReady") and not has_condition(p, GATE)
    ]


def pod_ready_with_closed_gate(pod: client.V1Pod) -> bool:
    return has_condition(pod, "ContainersReady") and has_condition(pod, "Ready", "False")


@pytest.mark.timeout(120)
def test_a_readiness_gate_holds_the_rollout_while_old_pods_serve(
    kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    template = {
        "metadata": {"labels": {"app": "web"}, "annotations": {"lockgate.dev/requires-version": "1"}},
        "spec": {
            "readinessGates": [{"conditionType": GATE}],
            "containers": [{"name": "web", "image": cluster.simulated_image}],
        },
    }
    deployment = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        },
    }
    kube.apps.create_namespaced_deployment(namespace, deployment)
    # The first rollout needs its gates opened too: no pod is Ready before that.
    for _ in range(2):
        pod = watch_until(
            kube.core.list_namespaced_pod,
            lambda p: pod_ready_with_closed_gate(p) and not has_condition(p, GATE),
            namespace=namespace,
            label_selector="app=web",
        )
        open_gate(kube, namespace, pod)
    watch_until(
        kube.apps.list_namespaced_deployment,
        deployment_rolled_out,
        namespace=namespace,
        field_selector="metadata.name=web",
    )
    old_pods = {p.metadata.name for p in kube.core.list_namespaced_pod(namespace, label_selector="app=web").items}

    kube.apps.patch_namespaced_deployment(
        "web", namespace, {"spec": {"template": {"metadata": {"annotations": {"lockgate.dev/requires-version": "2"}}}}}
    )
    new_pod = watch_until(
        kube.core.list_namespaced_pod,
        lambda p: p.metadata.name not in old_pods and pod_ready_with_closed_gate(p),
        namespace=namespace,
        label_selector="app=web",
    )
    ready = next(c for c in new_pod.status.conditions if c.type == "Ready")
    assert ready.reason == "ReadinessGatesNotReady" and GATE in ready.message
    time.sleep(2)  # give the controllers every chance to (wrongly) go on
    web = kube.apps.read_namespaced_deployment("web", namespace)
    assert not deployment_rolled_out(web) and web.status.updated_replicas == 1 and web.status.available_replicas == 2
    serving = [
        p for p in kube.core.list_namespaced_pod(namespace, label_selector="app=web").items if has_condition(p, "Ready")
    ]
    assert {p.metadata.name for p in serving} == old_pods

    new_hash = new_pod.metadata.labels["pod-template-hash"]
    open_gate(kube, namespace, new_pod)
    second = watch_until(
        kube.core.list_namespaced_pod,
        lambda p: (
            p.metadata.name != new_pod.metadata.name
            and p.metadata.labels["pod-template-hash"] == new_hash
            and pod_ready_with_closed_gate(p)
        ),
        namespace=namespace,
        label_selector="app=web",
    )
    open_gate(kube, namespace, second)
    web = watch_until(
        kube.apps.list_namespaced_deployment,
        deployment_rolled_out,
        namespace=namespace,
        field_selector="metadata.name=web",
    )
    assert has_condition(web, "Available")
    current = watch_until(kube.core.list_namespaced_pod, lambda p: True, namespace=namespace, label_selector="app=web")
    assert current.metadata.labels["pod-template-hash"] == new_hash


@pytest.mark.timeout(120)
def test_deleting_the_owner_garbage_collects_the_job(kube: Kube, namespace: str, cluster: LocalCluster) -> None:
    owner = kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    job = job_manifest("owned", cluster.simulated_image, ["pause"])
    job["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    ]
    kube.batch.create_namespaced_job(namespace, job)
    watch_until(
        kube.core.list_namespaced_pod,
        lambda p: p.status.phase == "Running",
        namespace=namespace,
        label_selector="batch.kubernetes.io/job-name=owned",
    )

    pods = kube.core.list_namespaced_pod(namespace, label_selector="batch.kubernetes.io/job-name=owned").items

    kube.core.delete_namespaced_config_map("owner", namespace)
    wait_deleted(kube.batch.list_namespaced_job, "owned", namespace=namespace)
    for pod in pods:  # and then the Job's own dependents
        wait_deleted(kube.core.list_namespaced_pod, pod.metadata.name, namespace=namespace)


@pytest.mark.timeout(120)
def test_a_service_account_gets_only_what_its_role_grants(kube: Kube, namespace: str, kubeconfig: Path) -> None:
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "limited"}})
    kube.rbac.create_namespaced_role(
        namespace,
        {"metadata": {"name": "get-pods"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
    )
    kube.rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "limited-get-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "get-pods"},
            "subjects": [{"kind": "ServiceAccount", "name": "limited", "namespace": namespace}],
        },
    )
    token = kube.core.create_namespaced_service_account_token(
        "limited", namespace, {"spec": {"audiences": [], "expirationSeconds": 600}}
    ).status.token
    admin = kube.api.configuration
    configuration = client.Configuration(host=admin.host, api_key={"authorization": f"Bearer {token}"})
    configuration.ssl_ca_cert = admin.ssl_ca_cert
    limited = client.CoreV1Api(client.ApiClient(configuration))

    with pytest.raises(ApiException) as not_found:
        limited.read_namespaced_pod("absent", namespace)
    assert not_found.value.status == 404  # allowed, merely absent
    for refused in (
        lambda: limited.list_namespaced_secret(namespace),
        lambda: limited.create_namespaced_config_map(namespace, {"metadata": {"name": "x"}}),
        lambda: limited.list_namespaced_pod(namespace),
    ):
        with pytest.raises(ApiException) as denied:
            refused()
        assert denied.value.status == 403
        assert f"system:serviceaccount:{namespace}:limited" in denied.value.body


@pytest.mark.timeout(60)
def test_start_operator_runs_a_command_against_the_cluster(
    start_operator, kube: Kube, namespace: str, kubeconfig: Path
) -> None:  # type: ignore[no-untyped-def]
    script = (
        "import os, sys, time; from kubernetes import client, config; config.load_kube_config();"
        "print('using', os.environ['KUBECONFIG'], flush=True);"
        "client.CoreV1Api().create_namespaced_config_map(sys.argv[1], {'metadata': {'name': 'from-operator'}}); time.sleep(600)"
    )
    operator = start_operator([sys.executable, "-c", script, namespace])
    watch_until(
        kube.core.list_namespaced_config_map,
        lambda cm: True,
        namespace=namespace,
        field_selector="metadata.name=from-operator",
    )
    assert operator.is_running
    assert f"using {kubeconfig}" in operator.log
    assert operator.stop() == -15
    assert not operator.is_running

    stubborn = start_operator(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
        name="stubborn",
    )
    assert stubborn.kill() == -9


@pytest.mark.timeout(120)
def test_up_reports_a_component_that_fails_to_start(tmp_path: Path, cluster: LocalCluster) -> None:
    if not cluster.local:
        pytest.skip("starts a local control plane")
    assets = tmp_path / "assets"
    assets.mkdir()
    for binary in ("etcd", "kube-controller-manager", "kube-scheduler", "kubectl", "helm"):
        (assets / binary).symlink_to(cluster.kubectl.parent / binary)
    (assets / "kube-apiserver").write_text("#!/bin/sh\necho 'E0101 fake apiserver: cannot start' >&2\nexit 1\n")
    (assets / "kube-apiserver").chmod(0o755)
    env = {**os.environ, "KUBEBUILDER_ASSETS": str(assets)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.cluster", "up", "--dir", str(tmp_path / "c")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode != 0
    assert "kube-apiserver exited with 1" in result.stderr and "fake apiserver: cannot start" in result.stderr
    down = subprocess.run(
        [sys.executable, "-m", "tests.cluster", "down", "--dir", str(tmp_path / "c")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 0 and "no test cluster is running" in down.stdout
