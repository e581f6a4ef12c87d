"""The migration Job for one (SchemaMigration, phase, version, attempt) (pure); with spec.targets, an
Indexed Job whose pods each migrate perPod targets of its wave in turn (targets.py)."""

from __future__ import annotations

from typing import Any

from ..shared.errors import Paused
from ..shared.phases import UNDO
from ..shared.targets import (
    DATABASE,
    FIRST_INDEX_ENV,
    INDEXES_ENV,
    KIND_ENV,
    NAMES_ENV,
    PER_POD_ENV,
    QUERY_ENV,
    SECRETS_DIR,
    joined,
)
from .ledger import JobRequest
from .spec import (
    API_VERSION,
    ATTEMPT_LABEL,
    KIND,
    MANAGED_BY,
    OWNER_ANNOTATION,
    OWNER_LABEL,
    PHASE_LABEL,
    RESULT_FINALIZER,
    TERMINATION_LOG,
    VERSION_LABEL,
    WAVE_LABEL,
    Migration,
    owner_label,
)
from .targets import Targets, indexed_job, secrets_volume, wave_targets

CONTAINER = "migrate"
MIGRATIONS_VOLUME = "migrations"
TARGETS_VOLUME = "lockgate-targets"
# Applied to each field the spec leaves unset: the runner needs no privileges at all.
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# Kubernetes refuses allowPrivilegeEscalation false beside these (an install that allows them).
ESCALATING_CAPABILITIES = frozenset({"SYS_ADMIN", "CAP_SYS_ADMIN"})


def job_manifest(migration: Migration, request: JobRequest) -> dict[str, Any]:
    spec = migration.spec
    labels = {
        MANAGED_BY[0]: MANAGED_BY[1],
        OWNER_LABEL: owner_label(migration.name),
        PHASE_LABEL: request.phase,
        VERSION_LABEL: str(request.version),
        ATTEMPT_LABEL: request.attempt,
    } | ({WAVE_LABEL: request.wave} if request.wave else {})
    job_spec: dict[str, Any] = {
        # Runs only once its uid is bound to the claim (ledger.py): a create that lands late never runs.
        "suspend": True,
        "backoffLimit": spec.backoff_limit,
        # A pod stopped by a pause (the runner exits 5 after committing its batch) or by a disruption
        # (eviction, preemption, drain) has not failed: its replacement resumes after the last batch.
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "Ignore",
                    "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [Paused.exit_code]},
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "template": {"metadata": _pod_metadata(migration, labels), "spec": _pod_spec(migration, request)},
    }
    if targets := _targets(migration, request):  # one index per target, each retried on its own
        del job_spec["backoffLimit"]
        job_spec.update(indexed_job(targets, spec.backoff_limit))
    if spec.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": request.name,
            "namespace": migration.namespace,
            "labels": labels,
            "annotations": {
                VERSION_LABEL: str(request.version),
                OWNER_ANNOTATION: migration.name,
            },
            "finalizers": [RESULT_FINALIZER],
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": migration.name,
                    "uid": migration.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }


def _targets(migration: Migration, request: JobRequest) -> Targets | None:
    """The targets this Job migrates: its wave's."""
    return wave_targets(migration.spec.targets, request.wave) if migration.spec.targets else None


def _pod_metadata(migration: Migration, labels: dict[str, str]) -> dict[str, Any]:
    template = migration.spec.pod_template
    return {
        "labels": {**(template.get("labels") or {}), **labels},
        "annotations": {**(template.get("annotations") or {}), OWNER_ANNOTATION: migration.name},
    }


def _pod_spec(migration: Migration, request: JobRequest) -> dict[str, Any]:
    spec, template = migration.spec, migration.spec.pod_template
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [_container(migration, request)],
        # The runner never talks to the Kubernetes API; mount a token only for an explicit account.
        "automountServiceAccountToken": bool(template.get("serviceAccountName")),
    }
    for key in (
        "serviceAccountName",
        "nodeSelector",
        "tolerations",
        "imagePullSecrets",
        "affinity",
        "priorityClassName",
    ):
        if template.get(key):
            pod[key] = template[key]
    if template.get("podSecurityContext"):
        pod["securityContext"] = template["podSecurityContext"]
    volumes = []
    if spec.migrations_config_map:
        volumes.append({"name": MIGRATIONS_VOLUME, "configMap": {"name": spec.migrations_config_map}})
    if (targets := _targets(migration, request)) and targets.kind == DATABASE:  # its wave's Secrets only
        volumes.append(secrets_volume(targets, TARGETS_VOLUME))
    if volumes:
        pod["volumes"] = volumes
    return pod


def _container(migration: Migration, request: JobRequest) -> dict[str, Any]:
    spec, template = migration.spec, migration.spec.pod_template
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": request.image,
        "env": _env(migration, request),
        "terminationMessagePath": TERMINATION_LOG,
        # Tools other than lockgate write no summary: their log tail explains a failure instead.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": _security_context(template),
    }
    container.update(_command(migration, request))
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if template.get("resources"):
        container["resources"] = template["resources"]
    mounts = []
    if spec.migrations_config_map:
        mounts.append({"name": MIGRATIONS_VOLUME, "mountPath": spec.migrations_path, "readOnly": True})
    if spec.targets and spec.targets.kind == DATABASE:
        mounts.append({"name": TARGETS_VOLUME, "mountPath": SECRETS_DIR, "readOnly": True})
    if mounts:
        container["volumeMounts"] = mounts
    return container


def _security_context(template: dict[str, Any]) -> dict[str, Any]:
    """The spec's container securityContext over RESTRICTED_CONTAINER, field by field: setting
    runAsUser does not bring privilege escalation back (pod_security.py refuses what is asked)."""
    asked = template.get("securityContext") or {}
    capabilities = asked.get("capabilities") or {}
    context: dict[str, Any] = {**RESTRICTED_CONTAINER, **asked, "capabilities": {"drop": ["ALL"], **capabilities}}
    escalating = asked.get("privileged") or ESCALATING_CAPABILITIES & set(capabilities.get("add") or [])
    if escalating and "allowPrivilegeEscalation" not in asked:
        del context["allowPrivilegeEscalation"]
    if "seccompProfile" not in asked and (template.get("podSecurityContext") or {}).get("seccompProfile"):
        del context["seccompProfile"]  # the pod's profile applies
    return context


def _command(migration: Migration, request: JobRequest) -> dict[str, list[str]]:
    """The phase's override, or `lockgate migrate --phase P --target V` (`lockgate undo --to V`)."""
    override = migration.spec.phase("rollback" if request.phase == UNDO else request.phase)
    if override.command or override.args:
        return {k: v for k, v in (("command", override.command), ("args", override.args)) if v}
    if request.phase == UNDO:
        return {"command": ["lockgate"], "args": ["undo", "--to", str(request.version)]}
    return {"command": ["lockgate"], "args": ["migrate", "--phase", request.phase, "--target", str(request.version)]}


def _env(migration: Migration, request: JobRequest) -> list[dict[str, Any]]:
    spec = migration.spec
    env: list[dict[str, Any]] = []
    if spec.secret_name:  # the URL reaches the pod only through the Secret: never in the Job, status or logs
        url = {"secretKeyRef": {"name": spec.secret_name, "key": spec.secret_key}}
        env.append({"name": "LOCKGATE_DATABASE_URL", "valueFrom": url})
    if targets := _targets(migration, request):  # each pod picks its own by its completion index (runner/targets.py)
        env.append({"name": KIND_ENV, "value": targets.kind})
        if targets.query:  # each pod lists the schemas itself and takes those of its index
            env.append({"name": QUERY_ENV, "value": targets.query})
            env.append({"name": INDEXES_ENV, "value": str(targets.indexes)})
            if targets.first_index:  # a canary's rest Job: its index i migrates shard first_index + i
                env.append({"name": FIRST_INDEX_ENV, "value": str(targets.first_index)})
        else:
            env.append({"name": NAMES_ENV, "value": joined(targets.names)})
        if targets.per_pod > 1:
            env.append({"name": PER_POD_ENV, "value": str(targets.per_pod)})
    env += [
        {"name": "LOCKGATE_MIGRATIONS_DIR", "value": spec.migrations_path},
        {"name": "LOCKGATE_SUMMARY_FILE", "value": TERMINATION_LOG},
        {"name": "LOCKGATE_PHASE", "value": request.phase},
        {"name": "LOCKGATE_TARGET_VERSION", "value": str(request.version)},
        {"name": "LOCKGATE_SCHEMAMIGRATION", "value": migration.name},
    ]
    if spec.history_table:
        env.append({"name": "LOCKGATE_HISTORY_TABLE", "value": spec.history_table})
    return env + list(spec.env)
