"""The SchemaMigration resource as typed values (pure parsing of the API object).

The CRD's OpenAPI schema and CEL rules reject malformed objects before they get here;
this module applies defaults, turns strings into types, and checks again the bounds an
older CRD did not have, and what the operator's Pod Security level refuses (pod_security.py):
such a spec runs nothing and is Stalled (MigrationSpec.problems).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from ..shared.phases import Phase
from ..shared.versions import Version
from .pod_security import Level, violations
from .selectors import canaries_first, parse_selectors, selected
from .targets import Targets, parse_targets

GROUP, VERSION, PLURAL, KIND = "lockgate.dev", "v1alpha1", "schemamigrations", "SchemaMigration"
API_VERSION = f"{GROUP}/{VERSION}"

# labels and annotations
SCHEMA_LABEL = "lockgate.dev/schema"  # on gated pod templates: the SchemaMigration's name
REQUIRES_ANNOTATION = "lockgate.dev/requires-version"
GATE_CONDITION = "lockgate.dev/schema-ready"
OWNER_LABEL = "lockgate.dev/schemamigration"  # on Jobs and their pods: owner_label(name)
OWNER_ANNOTATION = OWNER_LABEL  # on Jobs and their pods: the full name, which may not fit a label
PHASE_LABEL = "lockgate.dev/phase"
VERSION_LABEL = "lockgate.dev/version"
ATTEMPT_LABEL = "lockgate.dev/attempt"
WAVE_LABEL = "lockgate.dev/wave"  # with spec.targets.canary: canary or rest
MANAGED_BY = ("app.kubernetes.io/managed-by", "lockgate")
RESULT_FINALIZER = "lockgate.dev/result"
RETRY_ANNOTATION = "lockgate.dev/retry"
APPROVE_ANNOTATION = "lockgate.dev/approve-contract"
APPROVE_CANARY_ANNOTATION = "lockgate.dev/approve-canary"
PAUSED_ANNOTATION = "lockgate.dev/paused"

DEFAULT_MIGRATIONS_PATH = "/migrations"
TERMINATION_LOG = "/dev/termination-log"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
# The CRD's bound on contract.delay (a CEL rule): longer waits are what requireApproval is for.
MAX_CONTRACT_DELAY = timedelta(hours=8760)
MAX_INT32 = 2**31 - 1  # Kubernetes' bound on a Job's ttlSecondsAfterFinished
LABEL_VALUE_MAX = 63
POD_SECURITY_NOTE = (
    "refused by this operator's Pod Security level, {level}: a SchemaMigration's pod is made by the operator's "
    "ServiceAccount and may ask only for what that level allows; an install may allow more, see docs/helm.md#security"
)
T = TypeVar("T")
F = TypeVar("F")


@dataclass(frozen=True)
class PhaseSpec:
    enabled: bool = True
    command: list[str] | None = None
    args: list[str] | None = None


@dataclass(frozen=True)
class MigrationSpec:
    """spec, parsed; its defaults are the CRD's and are applied once, in parse_spec."""

    version: Version
    image: str
    secret_name: str | None  # None: targets.databases, each tenant's Secret holds its URL
    secret_key: str | None
    image_pull_policy: str | None
    history_table: str | None  # None: the runner's own default
    migrations_path: str
    migrations_config_map: str | None
    phases: dict[str, PhaseSpec]
    contract_delay: timedelta
    contract_requires_approval: bool
    rollback_policy: str
    env: list[dict[str, Any]]
    pod_template: dict[str, Any]
    backoff_limit: int
    active_deadline_seconds: int | None
    ttl_seconds_after_finished: int | None
    gate_kinds: tuple[str, ...]
    targets: Targets | None = None  # many tenants, one Indexed Job per phase (targets.py)
    # What an older CRD let through but lockgate cannot use, each naming its field: nothing runs.
    problems: tuple[str, ...] = ()

    def phase(self, name: str) -> PhaseSpec:
        return self.phases.get(name, PhaseSpec())


@dataclass(frozen=True)
class Migration:
    """A SchemaMigration as observed: identity, parsed spec, raw status and annotations."""

    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    spec: MigrationSpec
    status: dict[str, Any]
    annotations: dict[str, str]
    deleting: bool = False

    @property
    def retry_token(self) -> str:
        return self.annotations.get(RETRY_ANNOTATION, "")

    @property
    def paused(self) -> bool:
        """Background work is paused (lockgate.dev/paused: "true")."""
        return self.annotations.get(PAUSED_ANNOTATION, "").lower() == "true"

    @property
    def approved_version(self) -> str | None:
        return self.annotations.get(APPROVE_ANNOTATION)

    @property
    def canary_approved_version(self) -> str | None:
        return self.annotations.get(APPROVE_CANARY_ANNOTATION)


def owner_label(name: str) -> str:
    """The OWNER_LABEL value for a SchemaMigration: its name, or for a name longer than a label
    value may be (63), a prefix and a hash of the whole name. OWNER_ANNOTATION has the name."""
    if len(name) <= LABEL_VALUE_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: LABEL_VALUE_MAX - len(digest) - 1].rstrip('-.')}-{digest}"


def parse_duration(text: str) -> timedelta:
    """'90s', '10m', '1h30m', '500ms' -> timedelta, at most MAX_CONTRACT_DELAY."""
    parts = _DURATION.findall(text or "0s")
    if not parts or "".join(n + u for n, u in parts) != (text or "0s"):
        raise ValueError(f"{text!r} is not a duration such as 30s, 10m or 1h30m")
    seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = sum(float(n) * seconds[u] for n, u in parts)  # a float: never overflows, unlike timedelta
    if total > MAX_CONTRACT_DELAY.total_seconds():
        raise ValueError(
            f"{text} is longer than 8760h (one year): shorten it, or set contract.requireApproval to hold contract until approved"
        )
    return timedelta(seconds=total)


def parse_ttl(value: Any) -> int:
    """ttlSecondsAfterFinished as Kubernetes takes it: an int32 of at least 0."""
    if not isinstance(value, int) or not 0 <= value <= MAX_INT32:
        raise ValueError(f"{value} is not between 0 and {MAX_INT32} seconds: use a value in that range")
    return value


# What parse_migration reads of metadata; of the annotations, only lockgate's own.
_READ_METADATA = ("namespace", "name", "uid", "generation", "resourceVersion", "deletionTimestamp")


def migration_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a SchemaMigration that parse_migration reads, for the operator's cache: not
    managedFields nor kubectl's last-applied-configuration (a second copy of the spec)."""
    meta = body["metadata"]
    kept = {key: meta[key] for key in _READ_METADATA if key in meta}
    return {"metadata": {**kept, "annotations": _own(meta)}, "spec": body.get("spec", {}), "status": body.get("status")}


def _own(meta: Mapping[str, Any]) -> dict[str, str]:
    """lockgate's annotations (retry, paused, approve-contract, approve-canary): the only ones it reads."""
    return {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith(f"{GROUP}/")}


def parse_migration(body: dict[str, Any], pod_security: Level = Level.RESTRICTED) -> Migration:
    meta, spec = body["metadata"], body.get("spec", {})
    return Migration(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation", 1)),
        resource_version=meta.get("resourceVersion", ""),
        spec=parse_spec(spec, pod_security),
        status=body.get("status") or {},
        annotations=_own(meta),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def parse_spec(spec: dict[str, Any], pod_security: Level = Level.RESTRICTED) -> MigrationSpec:
    """The API server applies the CRD's defaults; the same ones apply here to bodies that did not
    pass through it (unit tests, the CLI). tests/unit/test_spec.py keeps the two equal.
    `pod_security` is the operator's level (lockgate run --pod-security)."""
    database = spec.get("database") or {}
    secret = (database.get("urlFrom") or {}).get("secretKeyRef") or {}
    migrations = spec.get("migrations") or {}
    contract = spec.get("contract") or {}
    problems: list[str] = []
    # A delay lockgate cannot use counts as the longest it takes: contract never runs early.
    delay = _checked(problems, "spec.contract.delay", parse_duration, contract.get("delay", "0s"), MAX_CONTRACT_DELAY)
    ttl = _checked(
        problems, "spec.ttlSecondsAfterFinished", parse_ttl, spec.get("ttlSecondsAfterFinished", 86400), None
    )
    pod_template = dict(spec.get("podTemplate") or {})
    if refused := violations(pod_template, pod_security):
        problems.append(f"{'; '.join(refused)} ({POD_SECURITY_NOTE.format(level=pod_security)})")
    targets = None
    if spec.get("targets") is not None:
        targets, wrong = parse_targets(spec["targets"], bool(database), database.get("historyTable"))
        targets, labels = parse_selectors(spec["targets"], targets)
        problems += wrong + labels + _own_commands_only(spec, targets)
    elif not secret:
        problems.append("spec.database: set it, or spec.targets for many tenants")
    return MigrationSpec(
        version=Version.parse(str(spec["version"])),
        image=spec["image"],
        image_pull_policy=spec.get("imagePullPolicy"),
        secret_name=secret.get("name"),
        secret_key=secret.get("key"),
        history_table=database.get("historyTable"),
        migrations_path=migrations.get("path", DEFAULT_MIGRATIONS_PATH),
        migrations_config_map=(migrations.get("configMap") or {}).get("name"),
        phases={name: _phase(spec.get(name) or {}) for name in (*Phase, "rollback")},
        contract_delay=delay,
        contract_requires_approval=bool(contract.get("requireApproval", False)),
        rollback_policy=(spec.get("rollback") or {}).get("policy", "Never"),
        env=list(spec.get("env") or []),
        pod_template=pod_template,
        backoff_limit=int(spec.get("backoffLimit", 2)),
        active_deadline_seconds=spec.get("activeDeadlineSeconds"),
        ttl_seconds_after_finished=ttl,
        gate_kinds=tuple((spec.get("gate") or {}).get("kinds") or ("Deployment", "StatefulSet", "DaemonSet")),
        targets=targets,
        problems=tuple(problems),
    )


def _own_commands_only(spec: dict[str, Any], targets: Targets) -> list[str]:
    """Only lockgate's own commands migrate a pod's several targets in turn (a schemaQuery's pod has
    any number): another tool gets one."""
    if targets.per_pod == 1 and not targets.query:
        return []
    fix = "list the schemas in spec.targets.schemas" if targets.query else "set spec.targets.perPod to 1"
    own = [n for n in (*Phase, "rollback") if ((spec.get(n) or {}).get("command") or ["lockgate"])[0] != "lockgate"]
    return [f"spec.{n}.command: another tool migrates one target per pod: {fix}" for n in own]


def _checked(problems: list[str], field: str, parse: Callable[[Any], T], raw: Any, fallback: F) -> T | F:
    """parse(raw), or `fallback` with the problem, naming the field, added to `problems`."""
    try:
        return parse(raw)
    except ValueError as exc:
        problems.append(f"{field}: {exc}")
        return fallback


def _phase(block: dict[str, Any]) -> PhaseSpec:
    return PhaseSpec(enabled=bool(block.get("enabled", True)), command=block.get("command"), args=block.get("args"))


def with_selected(m: Migration, found: tuple[str, ...] | None, canaries: tuple[str, ...] | None = ()) -> Migration:
    """The SchemaMigration with the Secrets spec.targets.databases.selector matched as targets
    (selectors.selected), those canary.selector matched first as the canary wave
    (selectors.canaries_first); None: the operator may not list Secrets. It lists them (reconciler.py)."""
    targets = m.spec.targets
    if targets is None or not (targets.selector or targets.canary_selector):
        return m
    resolved, problems = selected(targets, found) if targets.selector else (targets, [])
    if targets.canary_selector:
        resolved, wrong = canaries_first(resolved, canaries)
        problems += wrong
    spec = dataclasses.replace(m.spec, targets=resolved, problems=m.spec.problems + tuple(problems))
    return dataclasses.replace(m, spec=spec)
