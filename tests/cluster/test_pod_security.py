"""A SchemaMigration is a way to create pods; on the real API server it is no way around the
cluster's policy. A user who may only edit SchemaMigrations (the chart's editor ClusterRole, bound
in one namespace, authenticated with its own ServiceAccount token) gets no privileged pod: the
SchemaMigration ends InvalidSpec and nothing is created; that user cannot create Jobs or pods
directly either. The chart's user roles reach Kubernetes' edit and view roles by aggregation.
And where a namespace's Pod Security admission refuses the Job's pod (the operator set to allow
privileged pods), the SchemaMigration says which level the namespace enforces and what to change."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.kube import Kube, watch_until
from devcluster.workloads import condition, operator_command
from lockgate.controller.spec import GROUP, OWNER_LABEL, PLURAL, VERSION
from tests.chart_support import only, render
from tests.operator_fixtures import migration_body

pytestmark = pytest.mark.timeout(240, func_only=True)
IMAGE = "registry.invalid/shop-migrations:1"  # never pulled: these pods are judged before they run
PRIVILEGED = {
    "securityContext": {
        "privileged": True,
        "capabilities": {"add": ["SYS_ADMIN"]},
        "seccompProfile": {"type": "Unconfined"},
    }
}
RESTRICTED_LABEL = "pod-security.kubernetes.io/enforce"


@pytest.fixture
def user_roles(kube: Kube) -> Iterator[dict[str, str]]:
    """The chart's editor and viewer ClusterRoles, installed under a release name of this test."""
    release = f"t{uuid.uuid4().hex[:8]}"
    roles = [
        dict(r) for r in only(render(release=release), "ClusterRole") if "schemamigration-" in r["metadata"]["name"]
    ]
    for role in roles:
        kube.rbac.create_cluster_role(role)
    yield {r["metadata"]["name"].rsplit("-", 1)[1]: r["metadata"]["name"] for r in roles}
    for role in roles:
        kube.rbac.delete_cluster_role(role["metadata"]["name"])


def bind(kube: Kube, namespace: str, role: str, subject: dict[str, str]) -> None:
    kube.rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": f"{subject['name']}-{role}"[:63]},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [subject],
        },
    )


@pytest.fixture
def editor(kube: Kube, namespace: str, user_roles: dict[str, str]) -> Iterator[client.ApiClient]:
    """An API client authenticated as ServiceAccount `editor`, bound to the editor role and nothing else."""
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "editor"}})
    bind(kube, namespace, user_roles["editor"], {"kind": "ServiceAccount", "name": "editor", "namespace": namespace})
    token = kube.core.create_namespaced_service_account_token(
        "editor", namespace, {"spec": {"audiences": [], "expirationSeconds": 600}}
    ).status.token
    admin = kube.api.configuration
    configuration = client.Configuration(host=admin.host, api_key={"authorization": f"Bearer {token}"})
    configuration.ssl_ca_cert = admin.ssl_ca_cert
    api = client.ApiClient(configuration)
    yield api
    api.close()


def stalled_with(kube: Kube, namespace: str, name: str, reason: str, timeout: float = 90) -> str:
    body = watch_until(
        kube.custom.list_namespaced_custom_object,
        lambda b: condition(b, "Stalled").get("reason") == reason,
        timeout=timeout,
        group=GROUP,
        version=VERSION,
        namespace=namespace,
        plural=PLURAL,
        field_selector=f"metadata.name={name}",
    )
    assert condition(body, "Ready")["status"] == "False"
    return str(condition(body, "Stalled")["message"])


def refused(call: Any) -> ApiException:
    with pytest.raises(ApiException) as denied:
        call()
    assert denied.value.status == 403, denied.value
    return denied.value


def test_a_schemamigration_editor_gets_no_privileged_pod_and_no_pod_of_its_own(
    kube: Kube, crd: dict[str, Any], namespace: str, start_operator: Any, editor: client.ApiClient
) -> None:
    start_operator(operator_command(namespace))  # the default level: restricted
    as_editor = client.CustomObjectsApi(editor)
    body = migration_body("shop", "1", IMAGE, "db", podTemplate=PRIVILEGED)
    as_editor.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    message = stalled_with(kube, namespace, "shop", "InvalidSpec")
    for words in (
        "spec.podTemplate.securityContext.privileged: remove it or set it false",
        "spec.podTemplate.securityContext.capabilities.add SYS_ADMIN: remove them",
        "spec.podTemplate.securityContext.seccompProfile.type Unconfined: use RuntimeDefault or Localhost",
        "Pod Security level, restricted:",
    ):
        assert words in message, message
    assert not kube.batch.list_namespaced_job(namespace).items and not kube.core.list_namespaced_pod(namespace).items
    events = kube.core.list_namespaced_event(namespace, field_selector="involvedObject.name=shop").items
    assert [(e.type, e.reason) for e in events] == [("Warning", "InvalidSpec")]

    # The editor's rights end at SchemaMigrations: no Job, no pod, no status of its own making.
    job = {"metadata": {"name": "direct"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}}}
    pod = {"metadata": {"name": "direct"}, "spec": {"containers": [{"name": "c", "image": IMAGE, **PRIVILEGED}]}}
    user = f"system:serviceaccount:{namespace}:editor"
    assert user in refused(lambda: client.BatchV1Api(editor).create_namespaced_job(namespace, job)).body
    assert user in refused(lambda: client.CoreV1Api(editor).create_namespaced_pod(namespace, pod)).body
    status = {"status": {"phase": "Complete"}}
    refused(lambda: as_editor.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "shop", status))

    # Without what restricted refuses, the editor's SchemaMigration gets its Job, and a restricted container.
    cleared = dict.fromkeys(PRIVILEGED["securityContext"])  # nulls: a merge patch removes those fields
    unprivileged = {"spec": {"podTemplate": {"securityContext": {**cleared, "runAsNonRoot": True}}}}
    as_editor.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "shop", unprivileged)
    created = watch_until(kube.batch.list_namespaced_job, lambda j: True, namespace=namespace)
    security = created.spec.template.spec.containers[0].security_context
    assert (security.privileged, security.allow_privilege_escalation, security.run_as_non_root) == (None, False, True)
    assert security.capabilities.drop == ["ALL"] and security.capabilities.add is None
    assert security.seccomp_profile.type == "RuntimeDefault"


def test_the_user_roles_reach_kubernetes_edit_and_view_roles(
    kube: Kube, crd: dict[str, Any], namespace: str, user_roles: dict[str, str]
) -> None:
    bind(kube, namespace, "edit", {"kind": "User", "name": "dev", "apiGroup": "rbac.authorization.k8s.io"})
    bind(kube, namespace, "view", {"kind": "User", "name": "auditor", "apiGroup": "rbac.authorization.k8s.io"})
    authorization = client.AuthorizationV1Api(kube.api)

    def allowed(user: str, verb: str) -> bool:
        attributes = {"namespace": namespace, "verb": verb, "group": GROUP, "resource": PLURAL}
        review = {"spec": {"user": user, "resourceAttributes": attributes}}
        return bool(authorization.create_subject_access_review(review).status.allowed)

    # The controller manager aggregates the chart's roles into edit and view soon after they appear.
    watch_until(
        kube.rbac.list_cluster_role,
        lambda r: any(GROUP in (rule.api_groups or []) for rule in r.rules or []),
        timeout=60,
        field_selector="metadata.name=view",
    )
    assert allowed("dev", "create") and allowed("dev", "patch") and allowed("dev", "delete")
    assert allowed("auditor", "list") and not allowed("auditor", "create") and not allowed("auditor", "patch")
    assert not allowed("stranger", "list")


def test_a_namespace_that_enforces_restricted_refuses_the_pod_and_the_message_names_its_level(
    kube: Kube, crd: dict[str, Any], namespace: str, start_operator: Any
) -> None:
    kube.core.patch_namespace(namespace, {"metadata": {"labels": {RESTRICTED_LABEL: "restricted"}}})
    start_operator([*operator_command(namespace), "--pod-security", "privileged"])
    create = kube.custom.create_namespaced_custom_object
    create(GROUP, VERSION, namespace, PLURAL, migration_body("loud", "1", IMAGE, "db", podTemplate=PRIVILEGED))
    # The same namespace admits a pod that meets restricted: lockgate's defaults and runAsNonRoot.
    quiet = {"podSecurityContext": {"runAsNonRoot": True}}
    create(GROUP, VERSION, namespace, PLURAL, migration_body("quiet", "1", IMAGE, "db", podTemplate=quiet))

    message = stalled_with(kube, namespace, "loud", "JobCannotStart", timeout=120)
    for words in (
        "FailedCreate",
        'violates PodSecurity "restricted',
        f"namespace {namespace} enforces Pod Security level restricted",
        RESTRICTED_LABEL,
        "change spec.podTemplate to meet restricted",
    ):
        assert words in message, message
    # Pod Security admission only warns about a Job's template: the Job is there, its pod is refused.
    assert kube.batch.list_namespaced_job(namespace, label_selector=f"{OWNER_LABEL}=loud").items
    assert not kube.core.list_namespaced_pod(namespace, label_selector=f"{OWNER_LABEL}=loud").items
    admitted = watch_until(
        kube.core.list_namespaced_pod, lambda p: True, namespace=namespace, label_selector=f"{OWNER_LABEL}=quiet"
    )
    assert admitted.spec.security_context.run_as_non_root is True
