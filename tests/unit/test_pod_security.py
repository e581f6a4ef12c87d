"""What a SchemaMigration's pod may ask for, by the operator's Pod Security level (pure): each
rule of pod_security.py, the InvalidSpec it makes, the Job's security context, the advice when a
namespace's Pod Security admission refuses the pod, and the operator's --pod-security setting."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from lockgate.cli.parser import build_parser
from lockgate.controller.diagnosis import cannot_start
from lockgate.controller.history_entry import Result
from lockgate.controller.ledger import JobRequest, Ledger
from lockgate.controller.manifests import RESTRICTED_CONTAINER, job_manifest
from lockgate.controller.observed import JobView, Observed, WarningView
from lockgate.controller.phase_plan import plan_for
from lockgate.controller.pod_security import Level, violations
from lockgate.controller.spec import parse_migration
from lockgate.shared.timestamps import iso
from lockgate.shared.versions import Version

POD, CONTAINER = "spec.podTemplate.podSecurityContext", "spec.podTemplate.securityContext"
REQUEST = JobRequest("expand", Version.parse("3"), "abc123", "shop-expand-3-x1y2z", "registry/shop:3")


def body(pod_template: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "shop", "namespace": "ns", "uid": "u1", "generation": 1, "resourceVersion": "9"},
        "spec": {
            "version": "3",
            "image": "registry/shop:3",
            "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
            "podTemplate": pod_template,
        },
    }


def container(**fields: Any) -> dict[str, Any]:
    return {"securityContext": fields}


def pod(**fields: Any) -> dict[str, Any]:
    return {"podSecurityContext": fields}


# (what is asked, the level that first refuses it, words the refusal must hold: field and fix)
REFUSED: list[tuple[str, dict[str, Any], Level, tuple[str, ...]]] = [
    ("privileged", container(privileged=True), Level.BASELINE, (f"{CONTAINER}.privileged", "set it false")),
    (
        "hostProcess container",
        container(windowsOptions={"hostProcess": True}),
        Level.BASELINE,
        (f"{CONTAINER}.windowsOptions.hostProcess", "remove it"),
    ),
    (
        "hostProcess pod",
        pod(windowsOptions={"hostProcess": True}),
        Level.BASELINE,
        (f"{POD}.windowsOptions.hostProcess",),
    ),
    (
        "capability outside the baseline set",
        container(capabilities={"add": ["SYS_ADMIN", "NET_BIND_SERVICE"]}),
        Level.BASELINE,
        (f"{CONTAINER}.capabilities.add SYS_ADMIN:", "allowed:"),
    ),
    (
        "capability in baseline, not restricted",
        container(capabilities={"add": ["CHOWN"]}),
        Level.RESTRICTED,
        (f"{CONTAINER}.capabilities.add CHOWN:", "allowed: NET_BIND_SERVICE"),
    ),
    (
        "drop without ALL",
        container(capabilities={"drop": ["NET_RAW"]}),
        Level.RESTRICTED,
        (f"{CONTAINER}.capabilities.drop", "include ALL"),
    ),
    (
        "Unconfined seccomp, container",
        container(seccompProfile={"type": "Unconfined"}),
        Level.BASELINE,
        (f"{CONTAINER}.seccompProfile.type Unconfined", "RuntimeDefault or Localhost"),
    ),
    (
        "Unconfined seccomp, pod",
        pod(seccompProfile={"type": "Unconfined"}),
        Level.BASELINE,
        (f"{POD}.seccompProfile.type Unconfined",),
    ),
    (
        "Unconfined AppArmor",
        container(appArmorProfile={"type": "Unconfined"}),
        Level.BASELINE,
        (f"{CONTAINER}.appArmorProfile.type Unconfined", "RuntimeDefault or Localhost"),
    ),
    (
        "SELinux type",
        pod(seLinuxOptions={"type": "spc_t"}),
        Level.BASELINE,
        (f"{POD}.seLinuxOptions.type spc_t", "container_t"),
    ),
    (
        "SELinux user",
        container(seLinuxOptions={"user": "system_u"}),
        Level.BASELINE,
        (f"{CONTAINER}.seLinuxOptions.user",),
    ),
    ("SELinux role", pod(seLinuxOptions={"role": "sysadm_r"}), Level.BASELINE, (f"{POD}.seLinuxOptions.role",)),
    ("Unmasked /proc", container(procMount="Unmasked"), Level.BASELINE, (f"{CONTAINER}.procMount Unmasked", "Default")),
    (
        "unsafe sysctl",
        pod(sysctls=[{"name": "net.ipv4.tcp_syncookies", "value": "1"}, {"name": "kernel.msgmax", "value": "1"}]),
        Level.BASELINE,
        (f"{POD}.sysctls kernel.msgmax:", "remove"),
    ),
    (
        "AppArmor annotation",
        {"annotations": {"container.apparmor.security.beta.kubernetes.io/migrate": "unconfined"}},
        Level.BASELINE,
        ("spec.podTemplate.annotations container.apparmor.security.beta.kubernetes.io/migrate", "runtime/default"),
    ),
    (
        "seccomp annotation",
        {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}},
        Level.BASELINE,
        ("spec.podTemplate.annotations seccomp.security.alpha.kubernetes.io/pod",),
    ),
    (
        "privilege escalation",
        container(allowPrivilegeEscalation=True),
        Level.RESTRICTED,
        (f"{CONTAINER}.allowPrivilegeEscalation", "set it false"),
    ),
    (
        "runAsNonRoot false, pod",
        pod(runAsNonRoot=False),
        Level.RESTRICTED,
        (f"{POD}.runAsNonRoot false", "set it true"),
    ),
    ("runAsNonRoot false, container", container(runAsNonRoot=False), Level.RESTRICTED, (f"{CONTAINER}.runAsNonRoot",)),
    ("root user, pod", pod(runAsUser=0), Level.RESTRICTED, (f"{POD}.runAsUser 0", "non-zero user id")),
    ("root user, container", container(runAsUser=0), Level.RESTRICTED, (f"{CONTAINER}.runAsUser 0",)),
]
STRICTER = {Level.BASELINE: (Level.BASELINE, Level.RESTRICTED), Level.RESTRICTED: (Level.RESTRICTED,)}


@pytest.mark.parametrize(("asked", "refused_from", "words"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_each_rule_refuses_its_field_from_its_level_on(
    asked: dict[str, Any], refused_from: Level, words: tuple[str, ...]
) -> None:
    for level in Level:
        found = violations(asked, level)
        if level in STRICTER[refused_from]:
            assert len(found) == 1 and all(w in found[0] for w in words), (level, found)
        else:
            assert found == [], (level, found)


ALLOWED = [
    {},
    container(
        allowPrivilegeEscalation=False,
        privileged=False,
        runAsNonRoot=True,
        runAsUser=10001,
        readOnlyRootFilesystem=True,
        capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        seccompProfile={"type": "Localhost", "localhostProfile": "profiles/migrate.json"},
        appArmorProfile={"type": "RuntimeDefault"},
        seLinuxOptions={"type": "container_t", "level": "s0:c123,c456"},
        procMount="Default",
    ),
    pod(
        runAsNonRoot=True,
        runAsUser=1000,
        fsGroup=0,  # a group, not the user: restricted allows it
        seccompProfile={"type": "RuntimeDefault"},
        sysctls=[{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
    ),
    {"annotations": {"container.apparmor.security.beta.kubernetes.io/migrate": "localhost/lockgate", "team": "db"}},
]


@pytest.mark.parametrize("asked", ALLOWED)
def test_what_restricted_allows_passes_every_level(asked: dict[str, Any]) -> None:
    assert all(violations(asked, level) == [] for level in Level)


def test_every_refusal_is_listed_at_once() -> None:
    asked = {**container(privileged=True, runAsUser=0), **pod(seccompProfile={"type": "Unconfined"})}
    assert len(violations(asked, Level.RESTRICTED)) == 3 and len(violations(asked, Level.BASELINE)) == 2


def test_a_refused_spec_is_invalid_names_the_field_and_runs_nothing() -> None:
    m = parse_migration(body(container(privileged=True, capabilities={"add": ["SYS_ADMIN"]})))
    [problem] = m.spec.problems
    assert f"{CONTAINER}.privileged: remove it or set it false" in problem
    assert f"{CONTAINER}.capabilities.add SYS_ADMIN" in problem and "Pod Security level, restricted:" in problem
    plan = plan_for(m, Ledger.from_status({}), Observed(m, "ns", "shop"))
    assert plan.request is None and plan.stalled.status and plan.stalled.reason == "InvalidSpec"
    assert f"{CONTAINER}.privileged" in plan.stalled.message
    allowed = parse_migration(body(container(privileged=True, capabilities={"add": ["SYS_ADMIN"]})), Level.PRIVILEGED)
    assert allowed.spec.problems == ()


# the Job's container securityContext: the spec's fields over the restricted defaults


def security(pod_template: dict[str, Any], level: Level = Level.RESTRICTED) -> dict[str, Any]:
    job = job_manifest(parse_migration(body(pod_template), level), REQUEST)
    return dict(job["spec"]["template"]["spec"]["containers"][0]["securityContext"])


def test_fields_the_spec_leaves_unset_stay_restricted() -> None:
    assert security({}) == RESTRICTED_CONTAINER
    assert security(container(runAsUser=1000)) == {**RESTRICTED_CONTAINER, "runAsUser": 1000}
    assert security(container(capabilities={"add": ["NET_BIND_SERVICE"]}))["capabilities"] == {
        "drop": ["ALL"],
        "add": ["NET_BIND_SERVICE"],
    }
    assert security(container(seccompProfile={"type": "Localhost", "localhostProfile": "p.json"}))[
        "seccompProfile"
    ] == {"type": "Localhost", "localhostProfile": "p.json"}
    assert "seccompProfile" not in security(pod(seccompProfile={"type": "Localhost", "localhostProfile": "p.json"}))


def test_an_install_that_allows_privileged_pods_gets_a_context_kubernetes_accepts() -> None:
    # Kubernetes refuses allowPrivilegeEscalation false beside privileged or CAP_SYS_ADMIN.
    assert "allowPrivilegeEscalation" not in security(container(privileged=True), Level.PRIVILEGED)
    assert "allowPrivilegeEscalation" not in security(container(capabilities={"add": ["SYS_ADMIN"]}), Level.PRIVILEGED)
    assert security(container(privileged=True, allowPrivilegeEscalation=True), Level.PRIVILEGED)["privileged"] is True


# a namespace's Pod Security admission refusing the Job's pod


def why(job: JobView, observed: Observed) -> str:
    cause = cannot_start(job, observed)
    assert cause is not None and not cause.passing
    return cause.message


def test_a_pod_security_refusal_names_the_namespaces_level_and_what_to_change() -> None:
    now = datetime.now(timezone.utc)
    job = JobView(
        name="j1",
        phase="expand",
        version=Version.parse("1"),
        attempt="a",
        image="img",
        state=Result.RUNNING,
        start=iso(now - timedelta(minutes=1)),
        finished=None,
        has_finalizer=True,
        deleting=False,
        owner_uid="u1",
        uid="uid",
    )
    refusal = (
        'Error creating: pods "j1-x" is forbidden: violates PodSecurity "restricted:latest": '
        'runAsNonRoot != true (pod or container "migrate" must set securityContext.runAsNonRoot=true)'
    )
    warning = WarningView("j1", "FailedCreate", refusal, iso(now))
    observed = Observed(None, "shop", "m", jobs=(job,), warnings=(warning,), now=now)
    cause = why(job, observed)
    assert "namespace shop enforces Pod Security level restricted" in cause
    assert "pod-security.kubernetes.io/enforce" in cause and "runAsNonRoot: true" in cause
    baseline = dataclasses.replace(warning, message=refusal.replace("restricted:latest", "baseline:v1.33"))
    cause = why(job, dataclasses.replace(observed, warnings=(baseline,)))
    assert "enforces Pod Security level baseline" in cause and "runAsNonRoot" in cause  # from the refusal itself
    other = dataclasses.replace(warning, message="exceeded quota: pods")
    assert "Pod Security" not in why(job, dataclasses.replace(observed, warnings=(other,)))


# the operator's setting


def test_the_operator_level_comes_from_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_parser().parse_args(["run"]).pod_security == Level.RESTRICTED
    assert build_parser().parse_args(["run", "--pod-security", "baseline"]).pod_security == Level.BASELINE
    monkeypatch.setenv("LOCKGATE_POD_SECURITY", "privileged")
    assert build_parser().parse_args(["run"]).pod_security == Level.PRIVILEGED
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--pod-security", "none"])
    monkeypatch.setenv("LOCKGATE_POD_SECURITY", "lax")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run"])
