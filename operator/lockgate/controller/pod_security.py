"""What a SchemaMigration's podTemplate may ask for, by the operator's Pod Security level (pure).

Whoever may create a SchemaMigration gets a pod made by the operator's ServiceAccount, so the
pod must not be a way around the cluster's policy. The levels are the Pod Security Standards'
(https://kubernetes.io/docs/concepts/security/pod-security-standards/), applied to the fields
the CRD lets through (host namespaces, host ports and volumes it has none of). A refused field
makes the spec unusable (spec.MigrationSpec.problems): nothing runs until it is changed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any


class Level(enum.StrEnum):
    PRIVILEGED = "privileged"  # nothing refused: only for installs that mean it
    BASELINE = "baseline"
    RESTRICTED = "restricted"  # the default


BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
# Annotations the kubelet (AppArmor) or older API servers (seccomp) still read as profiles.
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
SECCOMP_ANNOTATIONS = ("seccomp.security.alpha.kubernetes.io/pod", "container.seccomp.security.alpha.kubernetes.io/")
POD, CONTAINER = "spec.podTemplate.podSecurityContext", "spec.podTemplate.securityContext"

Context = dict[str, Any]
Rule = Callable[[Context, str], list[str]]


def violations(template: dict[str, Any], level: Level) -> list[str]:
    """What `template` (spec.podTemplate) asks for that `level` forbids: one line per field,
    naming it and what to change."""
    if level == Level.PRIVILEGED:
        return []
    pod, container = template.get("podSecurityContext") or {}, template.get("securityContext") or {}
    both = ((pod, POD), (container, CONTAINER))
    found = _privileged(container) + _capabilities(container, level)
    if level == Level.RESTRICTED:
        found += _escalation(container)
        found += [line for rule in _RESTRICTED for context, where in both for line in rule(context, where)]
    found += [line for rule in _BASELINE for context, where in both for line in rule(context, where)]
    return found + _proc_mount(container) + _sysctls(pod) + _annotations(template.get("annotations") or {})


def _privileged(container: Context) -> list[str]:
    return [f"{CONTAINER}.privileged: remove it or set it false"] if container.get("privileged") else []


def _host_process(context: Context, where: str) -> list[str]:
    if (context.get("windowsOptions") or {}).get("hostProcess"):
        return [f"{where}.windowsOptions.hostProcess: remove it or set it false"]
    return []


def _seccomp(context: Context, where: str) -> list[str]:
    if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
        return [f"{where}.seccompProfile.type Unconfined: use RuntimeDefault or Localhost, or remove it"]
    return []


def _apparmor(context: Context, where: str) -> list[str]:
    if (context.get("appArmorProfile") or {}).get("type") == "Unconfined":
        return [f"{where}.appArmorProfile.type Unconfined: use RuntimeDefault or Localhost, or remove it"]
    return []


def _selinux(context: Context, where: str) -> list[str]:
    options = context.get("seLinuxOptions") or {}
    found = [f"{where}.seLinuxOptions.{key}: remove it" for key in ("user", "role") if options.get(key)]
    if options.get("type", "") not in SELINUX_TYPES:
        found.append(f"{where}.seLinuxOptions.type {options['type']}: use {', '.join(sorted(SELINUX_TYPES - {''}))}")
    return found


def _proc_mount(container: Context) -> list[str]:
    unmasked = container.get("procMount") == "Unmasked"
    return [f"{CONTAINER}.procMount Unmasked: remove it or set Default"] if unmasked else []


def _sysctls(pod: Context) -> list[str]:
    unsafe = [str(s.get("name")) for s in pod.get("sysctls") or [] if s.get("name") not in SAFE_SYSCTLS]
    return [f"{POD}.sysctls {', '.join(unsafe)}: remove them (only the safe set is allowed)"] if unsafe else []


def _non_root(context: Context, where: str) -> list[str]:
    return [f"{where}.runAsNonRoot false: set it true or remove it"] if context.get("runAsNonRoot") is False else []


def _not_uid_0(context: Context, where: str) -> list[str]:
    return [f"{where}.runAsUser 0 (root): use a non-zero user id or remove it"] if context.get("runAsUser") == 0 else []


def _escalation(container: Context) -> list[str]:
    if container.get("allowPrivilegeEscalation"):
        return [f"{CONTAINER}.allowPrivilegeEscalation: set it false or remove it"]
    return []


def _capabilities(container: Context, level: Level) -> list[str]:
    capabilities = container.get("capabilities") or {}
    allowed = RESTRICTED_CAPABILITIES if level == Level.RESTRICTED else BASELINE_CAPABILITIES
    extra = [str(c) for c in capabilities.get("add") or [] if c not in allowed]
    where = f"{CONTAINER}.capabilities"
    found = [f"{where}.add {', '.join(extra)}: remove them (allowed: {', '.join(sorted(allowed))})"] if extra else []
    if level == Level.RESTRICTED and "drop" in capabilities and "ALL" not in capabilities["drop"]:
        found.append(f"{where}.drop: include ALL, or remove drop (lockgate then drops ALL)")
    return found


def _annotations(annotations: dict[str, str]) -> list[str]:
    found = []
    for key, value in sorted(annotations.items()):
        if key.startswith(APPARMOR_ANNOTATION) and value != "runtime/default" and not value.startswith("localhost/"):
            found.append(f"spec.podTemplate.annotations {key}: {value}: use runtime/default or localhost/<profile>")
        elif key.startswith(SECCOMP_ANNOTATIONS) and value == "unconfined":
            found.append(f"spec.podTemplate.annotations {key}: unconfined: remove it")
    return found


# The rules that apply to the pod's and to the container's securityContext alike.
_BASELINE: tuple[Rule, ...] = (_host_process, _seccomp, _apparmor, _selinux)
_RESTRICTED: tuple[Rule, ...] = (_non_root, _not_uid_0)
