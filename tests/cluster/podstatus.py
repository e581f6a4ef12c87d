"""The kubelet's bookkeeping as pure functions: container states and their transitions,
restart decisions, the pod phase, the conditions the kubelet owns (readiness gates
included) and the status patch that reports them. Times are epoch seconds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

RESTART_BASE, RESTART_CAP = 0.5, 10.0  # the kubelet's 10 s .. 5 min, shrunk for tests
CONFIG_RETRY = 1.0


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ContainerState:
    name: str
    image: str
    state: str = "waiting"  # waiting | running | terminated (terminated is final: no restart follows)
    reason: str = "ContainerCreating"
    message: str = ""
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    ready: bool = False
    restart_count: int = 0
    last_terminated: Mapping | None = None  # the previous run, as the API shows it
    retry_at: float | None = None  # waiting for a restart or a config retry until then

    @property
    def succeeded(self) -> bool:
        return self.state == "terminated" and self.exit_code == 0


def initial_states(spec: Mapping) -> tuple[list[ContainerState], list[ContainerState]]:
    init = [ContainerState(c["name"], c["image"], reason="PodInitializing") for c in spec.get("initContainers") or []]
    reason = "PodInitializing" if init else "ContainerCreating"
    return init, [ContainerState(c["name"], c["image"], reason=reason) for c in spec["containers"]]


def can_start(c: ContainerState, now: float) -> bool:
    return c.state == "waiting" and (c.retry_at is None or c.retry_at <= now)


def to_start(init: Sequence[ContainerState], main: Sequence[ContainerState], now: float) -> list[str]:
    """Init containers one at a time, in order, each to success; then every main container."""
    for c in init:
        if not c.succeeded:
            return [c.name] if can_start(c, now) else []
    return [c.name for c in main if can_start(c, now)]


def next_wakeup(states: Sequence[ContainerState]) -> float | None:
    pending = [c.retry_at for c in states if c.state == "waiting" and c.retry_at is not None]
    return min(pending, default=None)


def started(c: ContainerState, now: float, ready: bool) -> ContainerState:
    restarts = c.restart_count + (1 if c.last_terminated else 0)
    return replace(
        c, state="running", reason="", message="", started_at=now, ready=ready, restart_count=restarts, retry_at=None
    )


def became_ready(c: ContainerState) -> ContainerState:
    return replace(c, ready=c.state == "running")


def config_error(
    c: ContainerState, message: str, now: float, reason: str = "CreateContainerConfigError"
) -> ContainerState:
    """Not startable yet (a missing Secret, say): retried shortly, as the kubelet keeps retrying."""
    return replace(c, state="waiting", reason=reason, message=message, retry_at=now + CONFIG_RETRY)


def should_restart(policy: str, exit_code: int, init: bool) -> bool:
    if init:
        return exit_code != 0 and policy != "Never"
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def exited(
    c: ContainerState, exit_code: int, message: str, now: float, policy: str, init: bool, reason: str = ""
) -> ContainerState:
    """The process ended: final, or waiting in back-off for its restart."""
    reason = reason or ("Completed" if exit_code == 0 else "Error")
    done = replace(
        c,
        state="terminated",
        reason=reason,
        message=message,
        exit_code=exit_code,
        finished_at=now,
        ready=False,
        retry_at=None,
    )
    if not should_restart(policy, exit_code, init):
        return done
    delay = min(RESTART_BASE * 2**c.restart_count, RESTART_CAP)
    return replace(
        done,
        state="waiting",
        reason="CrashLoopBackOff",
        message=f"back-off {delay:g}s restarting failed container={c.name}",
        exit_code=None,
        last_terminated=_terminated(done),
        retry_at=now + delay,
    )


def _terminated(c: ContainerState) -> dict:
    terminated = {"exitCode": c.exit_code, "reason": c.reason, "finishedAt": rfc3339(c.finished_at or 0)}
    if c.started_at is not None:
        terminated["startedAt"] = rfc3339(c.started_at)
    if c.message:
        terminated["message"] = c.message
    return terminated


def container_status(c: ContainerState, pod_uid: str) -> dict:
    container_id = f"lockgate://{pod_uid}/{c.name}/{c.restart_count}"
    if c.state == "running":
        state: dict = {"running": {"startedAt": rfc3339(c.started_at or 0)}}
    elif c.state == "terminated":
        state = {"terminated": {**_terminated(c), "containerID": container_id}}
    else:
        state = {"waiting": {"reason": c.reason, **({"message": c.message} if c.message else {})}}
    status = {
        "name": c.name,
        "image": c.image,
        "imageID": c.image,
        "ready": c.ready,
        "restartCount": c.restart_count,
        "started": c.state == "running",
        "state": state,
        "lastState": {"terminated": c.last_terminated} if c.last_terminated else {},
    }
    if c.started_at is not None:
        status["containerID"] = container_id
    return status


def pod_phase(init: Sequence[ContainerState], main: Sequence[ContainerState]) -> str:
    """Terminated states are final here, so the restart policy is already folded in."""
    if any(c.state == "terminated" and not c.succeeded for c in init):
        return "Failed"
    if not all(c.succeeded for c in init):
        return "Pending"
    if all(c.state == "terminated" for c in main):
        return "Succeeded" if all(c.succeeded for c in main) else "Failed"
    if any(c.state == "running" or c.last_terminated for c in main):
        return "Running"
    return "Pending"


def gate_messages(gates: Sequence[str], conditions: Sequence[Mapping]) -> list[str]:
    """Why the readiness gates hold the pod back, worded as the kubelet words it; empty when they pass."""
    by_type = {c["type"]: c for c in conditions}
    messages = []
    for gate in gates:
        if gate not in by_type:
            messages.append(f'corresponding condition of pod readiness gate "{gate}" does not exist.')
        elif by_type[gate].get("status") != "True":
            messages.append(
                f'the status of pod readiness gate "{gate}" is not "True", but {by_type[gate].get("status")}'
            )
    return messages


def _condition(type_: str, ok: bool, reason: str, message: str, previous: Mapping[str, Mapping], now: float) -> dict:
    status = "True" if ok else "False"
    before = previous.get(type_)
    since = (
        before["lastTransitionTime"]
        if before and before.get("status") == status and before.get("lastTransitionTime")
        else rfc3339(now)
    )
    condition = {"type": type_, "status": status, "lastTransitionTime": since}
    if not ok:
        condition.update(reason=reason, message=message)
    return condition


def owned_conditions(
    spec: Mapping,
    init: Sequence[ContainerState],
    main: Sequence[ContainerState],
    conditions: Sequence[Mapping],
    phase: str,
    now: float,
) -> list[dict]:
    """Initialized, ContainersReady and Ready; `conditions` are the pod's current ones (gates included)."""
    previous = {c["type"]: c for c in conditions}
    uninitialized = [c.name for c in init if not c.succeeded]
    unready = [c.name for c in main if not c.ready]
    if phase == "Succeeded":
        reason, why = "PodCompleted", ""
    else:
        reason, why = "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
    gates = gate_messages([g["conditionType"] for g in spec.get("readinessGates") or []], conditions)
    if not unready and gates:
        ready_reason, ready_message = "ReadinessGatesNotReady", ", ".join(gates)
    else:
        ready_reason, ready_message = reason, ", ".join([why, *gates] if why else gates)
    return [
        _condition(
            "Initialized",
            not uninitialized,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(uninitialized)}]",
            previous,
            now,
        ),
        _condition("ContainersReady", not unready, reason, why, previous, now),
        _condition("Ready", not unready and not gates, ready_reason, ready_message, previous, now),
    ]


def status_patch(
    pod: Mapping, init: Sequence[ContainerState], main: Sequence[ContainerState], started_at: float, now: float
) -> dict:
    """A strategic-merge patch of pods/status: conditions merge by type, so gate conditions set by others survive."""
    phase = pod_phase(init, main)
    ips = [{"ip": "127.0.0.1"}]
    uid = pod["metadata"]["uid"]
    return {
        "metadata": {"uid": uid},  # a precondition: never patch a new pod that reuses the name
        "status": {
            "phase": phase,
            "conditions": owned_conditions(
                pod["spec"], init, main, pod.get("status", {}).get("conditions") or [], phase, now
            ),
            "hostIP": "127.0.0.1",
            "hostIPs": ips,
            "podIP": "127.0.0.1",
            "podIPs": ips,
            "startTime": rfc3339(started_at),
            "initContainerStatuses": [container_status(c, uid) for c in init],
            "containerStatuses": [container_status(c, uid) for c in main],
        },
    }
