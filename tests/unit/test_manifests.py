"""The Job manifest a JobRequest becomes (controller/manifests.py)."""

from __future__ import annotations

from lockgate.controller.ledger import JobRequest
from lockgate.controller.manifests import RESTRICTED_CONTAINER, job_manifest
from lockgate.controller.spec import parse_migration
from lockgate.shared.versions import Version
from tests.unit.bodies import body

REQUEST = JobRequest("expand", Version.parse("3"), "abc123", "shop-expand-3-x1y2z", "registry/shop:3")


def test_default_job_runs_lockgate_with_the_url_only_from_the_secret() -> None:
    job = job_manifest(parse_migration(body()), REQUEST)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["lockgate"]
    assert container["args"] == ["migrate", "--phase", "expand", "--target", "3"]
    env = {e["name"]: e for e in container["env"]}
    assert env["LOCKGATE_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "db", "key": "url"}}
    assert env["LOCKGATE_SUMMARY_FILE"]["value"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    meta = job["metadata"]
    assert meta["finalizers"] == ["lockgate.dev/result"]
    assert meta["ownerReferences"][0] | {} == {
        "apiVersion": "lockgate.dev/v1alpha1",
        "kind": "SchemaMigration",
        "name": "shop",
        "uid": "u1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert meta["labels"]["lockgate.dev/phase"] == "expand" and meta["labels"]["lockgate.dev/version"] == "3"
    assert meta["annotations"] == {"lockgate.dev/version": "3", "lockgate.dev/schemamigration": "shop"}
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["ttlSecondsAfterFinished"] == 86400


def test_overrides_reach_the_pod() -> None:
    spec = body(
        migrations={"path": "/app/migrations", "configMap": {"name": "scripts"}},
        expand={"command": ["python", "manage.py", "migrate"]},
        env=[{"name": "DJANGO_SETTINGS_MODULE", "value": "shop.settings"}],
        podTemplate={
            "serviceAccountName": "migrator",
            "nodeSelector": {"pool": "db"},
            "tolerations": [{"key": "db", "operator": "Exists"}],
            "resources": {"limits": {"memory": "256Mi"}},
            "securityContext": {"runAsUser": 1000},
            "imagePullSecrets": [{"name": "reg"}],
        },
        backoffLimit=0,
        activeDeadlineSeconds=600,
        ttlSecondsAfterFinished=0,
        imagePullPolicy="Always",
    )
    job = job_manifest(parse_migration(spec), REQUEST)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["python", "manage.py", "migrate"] and "args" not in container
    assert container["volumeMounts"] == [{"name": "migrations", "mountPath": "/app/migrations", "readOnly": True}]
    assert pod["volumes"] == [{"name": "migrations", "configMap": {"name": "scripts"}}]
    assert {e["name"]: e.get("value") for e in container["env"]}["DJANGO_SETTINGS_MODULE"] == "shop.settings"
    assert (pod["serviceAccountName"], pod["nodeSelector"], pod["automountServiceAccountToken"]) == (
        "migrator",
        {"pool": "db"},
        True,
    )
    assert container["securityContext"] == {"runAsUser": 1000, **RESTRICTED_CONTAINER}  # unset fields stay restricted
    assert container["resources"]["limits"]["memory"] == "256Mi"
    assert (
        job["spec"]["backoffLimit"],
        job["spec"]["activeDeadlineSeconds"],
        job["spec"]["ttlSecondsAfterFinished"],
    ) == (0, 600, 0)
    assert container["imagePullPolicy"] == "Always" and pod["imagePullSecrets"] == [{"name": "reg"}]


def test_undo_job_runs_lockgate_undo() -> None:
    undo = JobRequest("undo", Version.parse("2"), "a", "shop-undo-2-x", "registry/shop:3")
    container = job_manifest(parse_migration(body()), undo)["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["undo", "--to", "2"] and container["image"] == "registry/shop:3"
