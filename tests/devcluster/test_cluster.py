"""The Kubernetes test harness (devcluster/): its pure core, then the harness itself on
the real API server: CRD validation, Jobs running real commands, readiness gates holding a
rollout, garbage collection, RBAC, init containers, pod deletion and `up`/`down`."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster import host, node
from devcluster.clusters import LocalCluster
from devcluster.fixtures import namespace_name
from devcluster.kube import Kube, deployment_rolled_out, wait_deleted, watch_until
from devcluster.processes import ComponentError

GATE = "lockgate.dev/schema-ready"

# --- the pure core ----------------------------------------------------------------------------

SAVE_BEFORE = """*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -j DOCKER
COMMIT
"""
SAVE_AFTER = """*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:KUBE-SERVICES - [0:0]
:CNI-abc - [0:0]
-A PREROUTING -j DOCKER
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -s 10.88.0.5/32 -m comment --comment "name: \\"lockgate\\"" -j CNI-abc
-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-X
-A CNI-abc ! -d 224.0.0.0/4 -j MASQUERADE
COMMIT
"""


def test_iptables_undo_removes_only_what_is_new_references_first() -> None:
    assert host.iptables_undo(SAVE_BEFORE, SAVE_AFTER) == [
        '-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-D POSTROUTING -s 10.88.0.5/32 -m comment --comment "name: \\"lockgate\\"" -j CNI-abc',
        "-F KUBE-SERVICES",
        "-F CNI-abc",
        "-X KUBE-SERVICES",
        "-X CNI-abc",
    ]
    assert host.iptables_undo(SAVE_AFTER, SAVE_AFTER) == []


def test_sysctls_are_written_back_only_where_changed() -> None:
    before = {"kernel/panic": "1", "vm/overcommit_memory": "0", "net/bridge/x": "1"}
    now = {"kernel/panic": "10", "vm/overcommit_memory": "0"}
    assert host.sysctl_writes(before, now) == {"kernel/panic": "1"}


def test_new_entries_come_deepest_first() -> None:
    before = ["/sys/fs/cgroup/memory/user"]
    now = [*before, "/sys/fs/cgroup/memory/kubepods", "/sys/fs/cgroup/memory/kubepods/burstable"]
    assert host.new_entries(before, now) == [
        "/sys/fs/cgroup/memory/kubepods/burstable",
        "/sys/fs/cgroup/memory/kubepods",
    ]


def test_the_node_s_processes_are_those_started_with_paths_inside_its_directory() -> None:
    node = ["/tmp/c/node", "/real/c/node"]  # as configured, and resolved
    shim = [
        "/cache/bin/containerd-shim-runc-v2",
        "-namespace",
        "k8s.io",
        "-id",
        "abc",
        "-address",
        "/tmp/c/node/containerd.sock",
    ]
    assert host.names_path_inside(shim, node)
    assert host.names_path_inside(["kubelet", "--config=/real/c/node/kubelet.yaml"], node)
    assert not host.names_path_inside(["python", "-m", "devcluster", "serve", "--dir", "/tmp/c"], node)
    assert not host.names_path_inside(["containerd-shim-runc-v2", "-address", "/tmp/c/nodeother/containerd.sock"], node)
    assert not host.names_path_inside(["containerd", "--config", "/run/other/containerd.toml"], node)


def test_mounts_under_a_directory_deepest_first() -> None:
    mountinfo = "\n".join(
        [
            "22 1 254:0 / / rw - ext4 /dev/vda rw",
            "90 22 0:50 / /tmp/c/node/kubelet/pods/x/volumes/secret rw - tmpfs tmpfs rw",
            "91 22 0:51 / /tmp/c/node/containerd/state/shm rw - tmpfs shm rw",
            "92 22 0:52 / /tmp/c/node/with\\040space rw - tmpfs tmpfs rw",
            "93 22 0:53 / /tmp/cother rw - tmpfs tmpfs rw",
        ]
    )
    assert host.mounts_under(mountinfo, Path("/tmp/c")) == [
        "/tmp/c/node/kubelet/pods/x/volumes/secret",
        "/tmp/c/node/containerd/state/shm",
        "/tmp/c/node/with space",
    ]


def test_host_differences_ignore_where_the_node_lived() -> None:
    before = host.HostState(sysctls={"kernel/panic": "1"}, node_dir="/tmp/a")
    assert host.differences(before, host.HostState(sysctls={"kernel/panic": "1"}, node_dir="/tmp/b")) == {}
    assert host.differences(before, host.HostState(sysctls={"kernel/panic": "10"})) == {
        "sysctls": ({"kernel/panic": "1"}, {"kernel/panic": "10"})
    }
    assert host.HostState.from_json(before.to_json()) == before


def test_node_ip_is_the_default_route_source_else_a_global_address() -> None:
    route = "192.0.2.255 via 192.0.2.1 dev eth0 src 192.0.2.2 uid 0 \\    cache"
    assert node.node_ip(route, "") == "192.0.2.2"
    addresses = "2: eth0    inet 10.1.2.3/24 brd 10.1.2.255 scope global eth0"
    assert node.node_ip("RTNETLINK answers: Network is unreachable", addresses) == "10.1.2.3"
    with pytest.raises(ComponentError, match="no global IPv4 address"):
        node.node_ip("", "")


def test_node_configuration_keeps_every_path_under_the_node_root(tmp_path: Path) -> None:
    layout = node.NodeLayout(tmp_path / "node")
    containerd = node.containerd_config(layout)
    for path in re.findall(r"= '(/[^']*)'", containerd):
        assert path.startswith(str(layout.root)) or path in (str(node.RUNC), str(node.CNI_BIN_DIR)), path
    assert "restrict_oom_score_adj = true" in containerd and "netns_mounts_under_state_dir = true" in containerd
    bridge = node.cni_config(layout)["plugins"][0]  # type: ignore[index]
    assert bridge["ipam"]["dataDir"].startswith(str(layout.root)) and bridge["bridge"] == node.BRIDGE


def test_node_is_ready_once_the_not_ready_taint_is_gone() -> None:
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert node.node_is_ready(ready)
    assert not node.node_is_ready(
        {**ready, "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}}
    )
    assert not node.node_is_ready({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})


def test_namespace_names_are_dns_labels() -> None:
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
def test_a_pod_waits_for_a_missing_secret(kube: Kube, namespace: str, cluster: LocalCluster) -> None:
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


@pytest.mark.timeout(120)
def test_a_container_without_command_runs_the_image_entrypoint(
    kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    pod = run_pod(kube, namespace, {"containers": [{"name": "main", "image": cluster.real_image, "args": ["--help"]}]})
    assert pod.status.phase == "Succeeded"
    assert "usage: lockgate" in kube.core.read_namespaced_pod_log("p", namespace)


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
        "files = sorted(f for f in os.listdir('/migrations') if not f.startswith('..'));"  # the kubelet's ..data links
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
        "open('/out/started', 'w').write('yes'); time.sleep(600)"
    )
    marker = f"sleeper-{uuid.uuid4().hex}"  # finds the container's process among the host's
    container = {
        "name": "main",
        "image": cluster.real_image,
        "command": ["python", "-c", script, marker],
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
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    (pid,) = host_pids_with(marker)

    started = time.monotonic()
    kube.core.delete_namespaced_pod("sleeper", namespace)
    wait_deleted(kube.core.list_namespaced_pod, "sleeper", timeout=30, namespace=namespace)
    assert time.monotonic() - started < 5, "a process that exits on SIGTERM should not wait out the grace period"
    assert (tmp_path / "stopped").read_text() == "SIGTERM"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def host_pids_with(marker: str) -> list[int]:
    """Host PIDs of the processes whose command line holds `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


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
            "containers": [{"name": "web", "image": cluster.idle_image}],
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
    job = job_manifest("owned", cluster.idle_image, ["/pause"])
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
