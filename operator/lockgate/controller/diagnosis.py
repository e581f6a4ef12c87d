"""Why a migration Job that was started runs no container, and what to change (pure).

The kubelet says it in the pod's status (a container waiting on a missing Secret, an image it
may not pull, a pod no node accepts); the Job controller and the kubelet say the rest only in
Warning Events (a pod the Job cannot create, a volume that cannot be mounted). Without this a
broken spec reads "Job is running" for ever.

A diagnosis must be right before it is loud. The kubelet and the Job controller read Secrets,
ConfigMaps and ServiceAccounts through the API server, so an API server or etcd outage reads
like a missing object unless the message is read: `configmap "x" not found` is the API server's
answer that x does not exist, while `failed to sync configmap cache: timed out waiting for the
condition` (or a timeout, a refused connection, an etcd error) says the question got no answer.
The object is not looked up here: the operator has no right to read ConfigMaps or Secrets (a
Secret cannot be read without its data), and the kubelet's words already tell the two apart. A
passing cause is retried by the kubelet on its own: it is shown as progress, and only once it
has lasted PASSING_GRACE is it a Stalled cause, and even then the advice never says to create
anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from ..shared import redaction
from ..shared.timestamps import parse_time
from .history_entry import Result
from .observed import JobPodView, JobView, Observed, WarningView

MESSAGE_LIMIT = 300
STUCK_AFTER = timedelta(seconds=20)
# How long a cause that says the API server did not answer stays a passing one (Reconciling):
# the kubelet retries a mount with a backoff that grows to about 2 minutes, so a pod that met an
# outage of a minute starts within about 3 minutes of its creation. Past this it is Stalled.
PASSING_GRACE = timedelta(minutes=5)

# What to change, by the reason Kubernetes gives.
ADVICE = {
    "CreateContainerConfigError": "fix spec.database.urlFrom or spec.env, or the Secret or ConfigMap they name",
    "CreateContainerError": "fix the container settings in spec.podTemplate",
    "ErrImageNeverPull": "put the image on the nodes, or change spec.imagePullPolicy",
    "ErrImagePull": "check spec.image and spec.podTemplate.imagePullSecrets",
    "ImagePullBackOff": "check spec.image and spec.podTemplate.imagePullSecrets",
    "InvalidImageName": "fix spec.image",
    "RunContainerError": "fix the container settings in spec.podTemplate",
    "Unschedulable": "no node can run it: fix spec.podTemplate nodeSelector, affinity, tolerations or resources",
    "FailedCreate": "the Job cannot create its pod: fix spec.podTemplate (serviceAccountName, for one) or the namespace's quota and policies",
    "FailedMount": "fix spec.migrations.configMap, or the ConfigMap or Secret it names",
}
# What to change when the API server answered that the object does not exist.
MISSING_ADVICE = {
    "CreateContainerConfigError": "create the {kind} {name}, or fix spec.database.urlFrom or spec.env",
    "FailedMount": "create the {kind} {name}, or fix spec.migrations.configMap",
}
MISSING_KEY_ADVICE = "add the key {key} to the {kind} {name}, or fix spec.database.urlFrom or spec.env"
PASSING_ADVICE = "the API server did not answer; Kubernetes retries on its own (Stalled if this lasts {grace})"
LASTING_OUTAGE_ADVICE = (
    "the API server has not answered for {grace}: check the API server, etcd and the node's connection to them"
)
# Pod Security admission's refusal of a pod: `violates PodSecurity "restricted:latest": ...`.
POD_SECURITY_REFUSAL = re.compile(r'violates PodSecurity "(\w+)')
# Warning Events that explain a Job without a running pod: FailedCreate on the Job, FailedMount on its pod.
EVENT_REASONS = frozenset({"FailedCreate", "FailedMount"})
# Reasons whose message comes from a read or write at the API server (not from a registry or a node).
API_REASONS = frozenset({"CreateContainerConfigError", "FailedMount", "FailedCreate"})

# The kubelet's and the API server's words for a question that got no answer (Kubernetes 1.2x-1.3x).
_NO_ANSWER = re.compile(
    r"failed to sync \w+ cache|timed out waiting for the condition|not registered|etcdserver:|context deadline exceeded"
    r"|request did not complete within|unable to return a response|currently unable to handle the request"
    r"|storage is \(re\)initializing|connection refused|i/o timeout|tls handshake timeout|client connection lost"
    r"|too many requests",
    re.IGNORECASE,
)
_MISSING = re.compile(r'\b(configmap|secret)s? "([\w.-]+)" not found', re.IGNORECASE)
_MISSING_KEY = re.compile(r"couldn't find key (\S+) in (ConfigMap|Secret) (\S+)")
_KINDS = {"configmap": "ConfigMap", "secret": "Secret"}


@dataclass(frozen=True)
class Cause:
    """Why a started Job runs no container, with what to do."""

    message: str
    passing: bool  # the API server did not answer (yet): progress to show, not a failure


def starting(observed: Observed) -> bool:
    """Whether a started Job runs no container yet: what says why (the pod's status, Events) is
    not watched, so the shell looks again soon."""
    return any(not any(p.started for p in observed.job_pods if p.job == j.name) for j in _started(observed.jobs))


def event_subjects(observed: Observed) -> tuple[str, ...]:
    """The Jobs and pods whose Warning Events the shell should read: those of started Jobs that
    have run no container for STUCK_AFTER and whose pods do not say why (reading them costs
    API calls, so only then: a thousand Jobs starting at once must not read Events each pass)."""
    subjects: list[str] = []
    for job in _started(observed.jobs):
        if (stuck := _stuck(job, observed)) is not None and _from_pods(stuck[0]) is None:
            subjects += [job.name, *(p.name for p in stuck[0])]
    return tuple(subjects)


def cannot_start(job: JobView, observed: Observed) -> Cause | None:
    """Why the Job's pod does not run, with the fix; None while it runs, while nothing is wrong,
    and for the first STUCK_AFTER of a pod (or of a Job without one): a node that an autoscaler
    is adding, an image being pulled, a quota about to free are not failures yet."""
    if job.suspended or job.state != Result.RUNNING or (stuck := _stuck(job, observed)) is None:
        return None
    pods, waited = stuck
    warnings = tuple(w for w in observed.warnings if (w.last_seen or "") >= (job.start or ""))  # not an earlier run's
    found = _from_pods(pods) or _from_events(job.name, pods, warnings)
    if found is None:
        return None
    reason, message = found
    text = redaction.redact(" ".join(message.split()))[:MESSAGE_LIMIT]
    if reason in API_REASONS and _NO_ANSWER.search(text):
        if waited < PASSING_GRACE:
            advice = PASSING_ADVICE.format(grace=_minutes(PASSING_GRACE))
            return Cause(f"{job.phase} Job {job.name} waits for the API server: {reason}: {text}; {advice}", True)
        advice = LASTING_OUTAGE_ADVICE.format(grace=_minutes(PASSING_GRACE))
    else:
        advice = _pod_security_advice(reason, text, observed.namespace) or advice_for(reason, text)
    return Cause(f"{job.phase} Job {job.name} cannot start: {reason}: {text}; {advice}", False)


def _stuck(job: JobView, observed: Observed) -> tuple[list[JobPodView], timedelta] | None:
    """The Job's pods and how long it has waited, when none runs a container and it has waited STUCK_AFTER."""
    pods = [p for p in observed.job_pods if p.job == job.name]
    if any(p.started for p in pods):
        return None
    # The youngest pod's age (a new pod starts afresh); a time not known yet counts as STUCK_AFTER.
    since = [parse_time(t) or observed.now - STUCK_AFTER for t in ([p.created for p in pods] if pods else [job.start])]
    waited = min(observed.now - t for t in since)
    return (pods, waited) if waited >= STUCK_AFTER else None


def advice_for(reason: str, message: str) -> str:
    """What to change: create an object only when the API server said it does not exist."""
    if reason in MISSING_ADVICE:
        if key := _MISSING_KEY.search(message):
            return MISSING_KEY_ADVICE.format(key=key[1], kind=key[2], name=key[3])
        if missing := _MISSING.search(message):
            return MISSING_ADVICE[reason].format(kind=_KINDS[missing[1].lower()], name=f'"{missing[2]}"')
    return ADVICE.get(reason, "see its Events")


def _pod_security_advice(reason: str, message: str, namespace: str) -> str | None:
    """For a pod the namespace's Pod Security admission refused: the level it enforces, and the fix."""
    refused = POD_SECURITY_REFUSAL.search(message) if reason == "FailedCreate" else None
    if refused is None:
        return None
    level = refused.group(1)
    advice = (
        f"namespace {namespace} enforces Pod Security level {level} (its label pod-security.kubernetes.io/enforce, "
        f"or the cluster's default): change spec.podTemplate to meet {level}, or have an administrator change "
        "the namespace's level"
    )
    if level == "restricted":  # what a spec without securityContext fields still lacks
        advice += "; an image with a numeric non-root USER meets it with spec.podTemplate.podSecurityContext.runAsNonRoot: true"
    return advice


def _minutes(grace: timedelta) -> str:
    return f"{grace.total_seconds() / 60:g} minutes"


def _started(jobs: tuple[JobView, ...]) -> list[JobView]:
    return [j for j in jobs if j.live and not j.suspended]


def _from_pods(pods: list[JobPodView]) -> tuple[str, str] | None:
    return next((p.problem for p in pods if p.problem), None)


def _from_events(job: str, pods: list[JobPodView], warnings: tuple[WarningView, ...]) -> tuple[str, str] | None:
    """FailedCreate counts only while the Job has no pod; FailedMount only for its pods."""
    subjects = {p.name for p in pods} if pods else {job}
    return next(((w.reason, w.message) for w in warnings if w.subject in subjects and w.reason in EVENT_REASONS), None)
