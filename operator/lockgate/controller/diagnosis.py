"""Why a migration Job that was started runs no container, and what to change (pure).

The kubelet says it in the pod's status (a container waiting on a missing Secret, an image it
may not pull, a pod no node accepts); the Job controller and the kubelet say the rest only in
Warning Events (a pod the Job cannot create, a volume that cannot be mounted). Without this a
broken spec reads "Job is running" for ever.
"""

from __future__ import annotations

from datetime import timedelta

from ..shared import redaction
from .observed import ACTIVE, JobPodView, JobView, Observed, WarningView, parse_time

MESSAGE_LIMIT = 300
STUCK_AFTER = timedelta(seconds=20)

# What to change, by the reason Kubernetes gives.
ADVICE = {
    "CreateContainerConfigError": "create the Secret or ConfigMap it names, or fix spec.database.urlFrom or spec.env",
    "CreateContainerError": "fix the container settings in spec.podTemplate",
    "ErrImageNeverPull": "put the image on the nodes, or change spec.imagePullPolicy",
    "ErrImagePull": "check spec.image and spec.podTemplate.imagePullSecrets",
    "ImagePullBackOff": "check spec.image and spec.podTemplate.imagePullSecrets",
    "InvalidImageName": "fix spec.image",
    "RunContainerError": "fix the container settings in spec.podTemplate",
    "Unschedulable": "no node can run it: fix spec.podTemplate nodeSelector, affinity, tolerations or resources",
    "FailedCreate": "the Job cannot create its pod: fix spec.podTemplate (serviceAccountName, for one) or the namespace's quota and policies",
    "FailedMount": "create the ConfigMap or Secret it names, or fix spec.migrations.configMap",
}
# Warning Events that explain a Job without a running pod: FailedCreate on the Job, FailedMount on its pod.
EVENT_REASONS = frozenset({"FailedCreate", "FailedMount"})


def event_subjects(observed: Observed) -> tuple[str, ...]:
    """The Jobs and pods whose Warning Events the shell should read: those of started Jobs
    with no container running yet (reading them costs one API call, so only then)."""
    subjects: list[str] = []
    for job in _started(observed.jobs):
        pods = [p for p in observed.job_pods if p.job == job.name]
        if not any(p.started for p in pods):
            subjects += [job.name, *(p.name for p in pods)]
    return tuple(subjects)


def cannot_start(job: JobView, observed: Observed) -> str | None:
    """Why the Job's pod does not run, with the fix; None while it runs, while nothing is wrong,
    and for the first STUCK_AFTER of a pod (or of a Job without one): a node that an autoscaler
    is adding, an image being pulled, a quota about to free are not failures yet."""
    pods = [p for p in observed.job_pods if p.job == job.name]
    if job.suspended or job.state != ACTIVE or any(p.started for p in pods):
        return None
    since = [p.created for p in pods] if pods else [job.start]
    if any(observed.now - (parse_time(t) or observed.now - STUCK_AFTER) < STUCK_AFTER for t in since):
        return None
    warnings = tuple(w for w in observed.warnings if (w.last_seen or "") >= (job.start or ""))  # not an earlier run's
    found = _from_pods(pods) or _from_events(job.name, pods, warnings)
    if found is None:
        return None
    reason, message = found
    text = redaction.redact(" ".join(message.split()))[:MESSAGE_LIMIT]
    return f"{job.phase} Job {job.name} cannot start: {reason}: {text}; {ADVICE.get(reason, 'see its Events')}"


def _started(jobs: tuple[JobView, ...]) -> list[JobView]:
    return [j for j in jobs if j.live and not j.suspended]


def _from_pods(pods: list[JobPodView]) -> tuple[str, str] | None:
    return next((p.problem for p in pods if p.problem), None)


def _from_events(job: str, pods: list[JobPodView], warnings: tuple[WarningView, ...]) -> tuple[str, str] | None:
    """FailedCreate counts only while the Job has no pod; FailedMount only for its pods."""
    subjects = {p.name for p in pods} if pods else {job}
    return next(((w.reason, w.message) for w in warnings if w.subject in subjects and w.reason in EVENT_REASONS), None)
