"""The operator's I/O shell (controller/reconciler.py, controller/kube.py) against the real API
server: the status write guarded by resourceVersion and its conflict loop, adopt-on-409, release
of the result finalizer, and error backoff. No kopf and no mocks: `observe` reads the API the way
the kopf indexes mirror it, and every 409, 403 and deletion comes from the API server itself."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import pytest
from kubernetes import client, config
from prometheus_client import REGISTRY

from devcluster.kube import Kube
from lockgate.controller.decide import Decision, decide
from lockgate.controller.kube import KubeApi
from lockgate.controller.ledger import LOST_GRACE, JobRef, JobRequest
from lockgate.controller.manifests import job_manifest
from lockgate.controller.observed import Observed
from lockgate.controller.reconciler import Key, Reconciler
from lockgate.controller.spec import GROUP, PLURAL, RESULT_FINALIZER, VERSION, parse_migration
from lockgate.shared.timestamps import parse_time
from tests.operator_fixtures import live_view, migration_body

pytestmark = pytest.mark.timeout(180, func_only=True)  # the session cluster may build images first
NAME = "shop"
OTHER_FINALIZER = "example.com/keep"


def create_migration(clients: Kube, namespace: str, name: str = NAME, **spec: Any) -> dict[str, Any]:
    body = migration_body(name, "1", "registry.invalid/shop-migrations:1", "db", **spec)  # no Job here runs a pod
    return clients.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def get_migration(clients: Kube, namespace: str, name: str = NAME) -> dict[str, Any]:
    return clients.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def stale_then_live(first: Observed, live: Callable[[Key], Observed]) -> Callable[[Key], Observed]:
    """A view that lags once (the watch has not delivered the latest write yet), then catches up."""
    pending = [first]
    return lambda key: pending.pop() if pending else live(key)


def one_pass(reconciler: Reconciler, key: Key) -> None:
    asyncio.run(reconciler.reconcile(key))


def conflicts() -> float:
    return REGISTRY.get_sample_value("lockgate_status_conflicts_total") or 0.0


def reconcile_errors(transient: str) -> float:
    """Failed passes counted so far, over every step (lockgate_reconcile_errors_total)."""
    family = next(f for f in REGISTRY.collect() if f.name == "lockgate_reconcile_errors")
    return sum(s.value for s in family.samples if s.name.endswith("_total") and s.labels["transient"] == transient)


def stalled_since(namespace: str, reason: str) -> float | None:
    labels = {"namespace": namespace, "name": NAME, "reason": reason}
    return REGISTRY.get_sample_value("lockgate_migration_stalled_since_timestamp_seconds", labels)


def claim(observed: Observed) -> JobRequest:
    request = decide(observed).create
    assert request is not None
    return request


def suspended(manifest: dict[str, Any]) -> dict[str, Any]:
    """The operator's Job as it would create it, but suspended: the node runs no pod for it."""
    manifest["spec"]["suspend"] = True
    return manifest


def jobs(clients: Kube, namespace: str) -> list[Any]:
    return clients.batch.list_namespaced_job(namespace).items


@pytest.fixture
def clients(kube: Kube, crd: dict[str, Any], namespace: str) -> Iterator[Kube]:
    yield kube
    for job in jobs(kube, namespace):  # no operator releases them: let the namespace go
        kube.batch.patch_namespaced_job(job.metadata.name, namespace, {"metadata": {"finalizers": None}})


# the status write and its conflict loop


def test_a_status_write_that_loses_a_race_is_read_again_and_decided_again(clients: Kube, namespace: str) -> None:
    create_migration(clients, namespace)
    key = (namespace, NAME)
    stale = live_view(clients)(key)
    stale_claim = claim(stale)
    # A second writer comes first: the retry annotation changes the attempt, so the Job to claim.
    clients.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, NAME, {"metadata": {"annotations": {"lockgate.dev/retry": "1"}}}
    )
    before = conflicts()
    one_pass(Reconciler(KubeApi(clients.api), stale_then_live(stale, live_view(clients))), key)
    assert conflicts() == before + 1  # the API server refused the write at the stale resourceVersion
    status = get_migration(clients, namespace)["status"]
    [entry] = status["history"]
    assert entry["result"] == "Running" and entry["job"] != stale_claim.name  # decided from the fresh object
    assert [j.metadata.name for j in jobs(clients, namespace)] == [entry["job"]] == [status["jobs"]["expand"]]


def test_a_claim_that_loses_the_race_creates_no_job(clients: Kube, namespace: str) -> None:
    create_migration(clients, namespace)
    key = (namespace, NAME)
    stale = live_view(clients)(key)
    assert decide(stale).create is not None  # from this view, the loser would create a Job
    winner = decide(stale)  # another replica decides from the same view and writes its claim first
    assert stale.migration is not None and winner.status is not None
    assert KubeApi(clients.api).write_status(namespace, NAME, stale.migration.resource_version, winner.status)
    before = conflicts()
    one_pass(Reconciler(KubeApi(clients.api), stale_then_live(stale, live_view(clients))), key)
    assert conflicts() == before + 1
    assert jobs(clients, namespace) == []  # the fresh claim is the winner's: the loser leaves it alone
    [entry] = get_migration(clients, namespace)["status"]["history"]
    assert (entry["job"], entry["claimedAt"]) == (winner.create.name, winner.status["history"][0]["claimedAt"])


# adopt-on-409


def test_a_job_that_exists_already_is_adopted_not_duplicated(
    clients: Kube, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    create_migration(clients, namespace)
    key = (namespace, NAME)
    view = live_view(clients)(key)
    assert view.migration is not None
    # Another replica created the claimed Job; this replica's watch has not seen it yet.
    first = clients.batch.create_namespaced_job(namespace, suspended(job_manifest(view.migration, claim(view))))
    caplog.set_level(logging.INFO, "lockgate.reconciler")
    one_pass(Reconciler(KubeApi(clients.api), lambda _: view), key)
    [job] = jobs(clients, namespace)
    assert job.metadata.uid == first.metadata.uid  # the same object: not deleted and created again
    assert get_migration(clients, namespace)["status"]["jobs"]["expand"] == job.metadata.name
    assert f"expand Job {job.metadata.name} for version 1 adopted" in caplog.text


def test_a_name_clash_with_another_owners_job_is_reported_not_adopted(clients: Kube, namespace: str) -> None:
    ours = parse_migration(create_migration(clients, namespace))
    other = parse_migration(create_migration(clients, namespace, name="other"))
    request = claim(live_view(clients)((namespace, NAME)))
    theirs = suspended(job_manifest(other, request))  # same name, another controller
    clients.batch.create_namespaced_job(namespace, theirs)
    kube = KubeApi(clients.api)
    assert kube.create_job(suspended(job_manifest(ours, request))) == other.uid
    ownerless = suspended(job_manifest(ours, request)) | {"metadata": {"name": "plain", "namespace": namespace}}
    clients.batch.create_namespaced_job(namespace, ownerless)
    assert kube.create_job(ownerless) == ""
    assert sorted(j.metadata.name for j in jobs(clients, namespace)) == sorted([request.name, "plain"])


# release of the result finalizer


@pytest.fixture
def held_job(clients: Kube, namespace: str) -> str:
    """A Job holding lockgate's finalizer and another's."""
    migration = parse_migration(create_migration(clients, namespace))
    manifest = suspended(job_manifest(migration, claim(live_view(clients)((namespace, NAME)))))
    manifest["metadata"]["finalizers"] = [OTHER_FINALIZER, RESULT_FINALIZER]
    return str(clients.batch.create_namespaced_job(namespace, manifest).metadata.name)


def test_release_removes_only_lockgates_finalizer(clients: Kube, namespace: str, held_job: str) -> None:
    kube = KubeApi(clients.api)
    kube.release_job(namespace, held_job)
    assert clients.batch.read_namespaced_job(held_job, namespace).metadata.finalizers == [OTHER_FINALIZER]
    kube.release_job(namespace, held_job)  # releasing again, or a Job that is gone, is a no-op
    kube.release_job(namespace, "gone")


def test_a_finished_job_is_held_until_its_result_is_recorded_then_ttl_deletes_it(clients: Kube, namespace: str) -> None:
    create_migration(clients, namespace, ttlSecondsAfterFinished=0)
    key = (namespace, NAME)
    observe, kube = live_view(clients), KubeApi(clients.api)
    view = observe(key)
    winner = decide(view)
    assert view.migration is not None and winner.create is not None and winner.status is not None
    assert kube.write_status(namespace, NAME, view.migration.resource_version, winner.status)
    # The claimed Job, made to complete without a pod: completions 0 needs none.
    manifest = job_manifest(parse_migration(get_migration(clients, namespace)), winner.create)
    manifest["spec"]["completions"] = 0
    kube.create_job(manifest)
    held = wait_for(
        lambda: clients.batch.read_namespaced_job(winner.create.name, namespace).metadata.deletion_timestamp
    )
    assert held  # TTL asked for the deletion; the finalizer keeps the Job until its result is recorded
    assert get_migration(clients, namespace)["status"]["history"][0]["result"] == "Running"
    name = winner.create.name

    def released_and_deleted() -> bool:  # (the background Job claimed next stays)
        return name not in {j.metadata.name for j in jobs(clients, namespace)}

    asyncio.run(run_until(Reconciler(kube, observe), key, released_and_deleted, timeout=30))
    entry = get_migration(clients, namespace)["status"]["history"][0]
    assert (entry["job"], entry["result"]) == (name, "Succeeded")


# a create that lands late


def test_a_create_delayed_past_the_claim_grace_never_runs(clients: Kube, namespace: str, cluster: Any) -> None:
    """Replica A claims and sends its create, which the API server holds; replica B re-claims after
    the grace, creates, binds and runs the Job; its result is recorded and TTL deletes it. Then A's
    create lands: a second Job of the same name (another uid) that must never run."""
    clients.core.create_namespaced_secret(namespace, {"metadata": {"name": "db"}, "stringData": {"url": "unused"}})
    body = migration_body(NAME, "1", cluster.real_image, "db", ttlSecondsAfterFinished=0, expand={"command": ["true"]})
    body["spec"] |= {"background": {"enabled": False}, "contract": {"enabled": False}}
    clients.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    key, observe, kube = (namespace, NAME), live_view(clients), KubeApi(clients.api)
    view = observe(key)
    assert view.migration is not None
    delayed = job_manifest(view.migration, claim(view))  # A's create, still on its way

    def recorded_and_deleted() -> bool:
        entry = get_migration(clients, namespace).get("status", {}).get("history", [{}])[0]
        return entry.get("result") == "Succeeded" and not jobs(clients, namespace)

    asyncio.run(run_until(Reconciler(kube, observe), key, recorded_and_deleted, timeout=90))
    [entry] = get_migration(clients, namespace)["status"]["history"]
    late = clients.batch.create_namespaced_job(namespace, delayed)  # A's create lands
    assert late.metadata.name == entry["job"] and late.metadata.uid != entry["jobUid"]

    def late_gone() -> bool:
        return not jobs(clients, namespace)

    asyncio.run(run_until(Reconciler(kube, observe), key, late_gone, timeout=60))
    assert get_migration(clients, namespace)["status"]["history"] == [entry]  # one run, nothing added
    pods = clients.core.list_namespaced_pod(namespace, label_selector=f"controller-uid={late.metadata.uid}").items
    assert pods == []  # it never started


def test_job_actions_decided_from_a_stale_view_are_refused(clients: Kube, namespace: str) -> None:
    """Deleting, starting or suspending a Job needs the view it was decided from to be current,
    even when the status would not change: a lagging replica must not delete a fresh claim's Job."""
    create_migration(clients, namespace)
    key, kube = (namespace, NAME), KubeApi(clients.api)
    stale = live_view(clients)(key)
    clients.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, NAME, {"metadata": {"annotations": {"lockgate.dev/paused": "true"}}}
    )
    delete = Decision(delete=(JobRef("shop-expand-1-00000", "some-uid"),))
    assert asyncio.run(Reconciler(kube, live_view(clients))._confirmed(stale, delete)) is False
    assert asyncio.run(Reconciler(kube, live_view(clients))._confirmed(live_view(clients)(key), delete)) is True


def test_a_bound_job_missing_from_a_lagging_watch_is_not_called_lost(clients: Kube, namespace: str) -> None:
    create_migration(clients, namespace)
    key, observe, kube = (namespace, NAME), live_view(clients), KubeApi(clients.api)
    reconciler = Reconciler(kube, observe)
    one_pass(reconciler, key)  # claims and creates the Job
    one_pass(reconciler, key)  # binds it
    [entry] = get_migration(clients, namespace)["status"]["history"]
    assert entry.get("jobUid")
    later = datetime.now(timezone.utc) + LOST_GRACE + timedelta(seconds=5)
    lagging = lambda k: dataclasses.replace(observe(k), jobs=(), job_pods=(), now=later)  # noqa: E731
    one_pass(Reconciler(kube, lagging), key)
    assert get_migration(clients, namespace)["status"]["history"][0]["result"] == "Running"


# error backoff


@pytest.fixture
def limited_api(clients: Kube, namespace: str, kubeconfig: Any) -> Iterator[Any]:
    """An API client acting as a ServiceAccount that may do everything the operator does here but
    create Jobs (the API server answers 403); `grant_jobs` fixes that."""
    rules = [
        {"apiGroups": [GROUP], "resources": [PLURAL, f"{PLURAL}/status"], "verbs": ["get", "patch"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    clients.rbac.create_namespaced_role(namespace, {"metadata": {"name": "operator"}, "rules": rules})
    subject = {"kind": "ServiceAccount", "name": "operator", "namespace": namespace}
    binding = {"kind": "Role", "name": "operator", "apiGroup": "rbac.authorization.k8s.io"}
    clients.rbac.create_namespaced_role_binding(
        namespace, {"metadata": {"name": "operator"}, "roleRef": binding, "subjects": [subject]}
    )
    api = config.new_client_from_config(str(kubeconfig))
    api.set_default_header("Impersonate-User", f"system:serviceaccount:{namespace}:operator")
    yield api
    api.close()


def grant_jobs(clients: Kube, namespace: str) -> None:
    role = clients.rbac.read_namespaced_role("operator", namespace)
    role.rules.append(client.V1PolicyRule(api_groups=["batch"], resources=["jobs"], verbs=["create"]))
    clients.rbac.replace_namespaced_role("operator", namespace, role)


def test_api_errors_stall_visibly_and_back_off_until_fixed(
    clients: Kube, namespace: str, limited_api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    create_migration(clients, namespace)
    key = (namespace, NAME)
    caplog.set_level(logging.INFO, "lockgate.reconciler")

    refused_before = reconcile_errors("false")

    async def run() -> None:
        Reconciler(KubeApi(limited_api), live_view(clients)).request(key)
        await asyncio.sleep(12)  # without backoff, hundreds of attempts
        failed = [r.created for r in caplog.records if "retrying" in r.getMessage()]
        assert 2 <= len(failed) <= 3, failed
        assert all(b - a >= 4.5 for a, b in pairwise(failed)), failed
        assert reconcile_errors("false") - refused_before == len(failed)  # each refusal counted, as one
        event = await asyncio.to_thread(stalled_event, clients, namespace)
        assert "403 Forbidden" in event.message and "jobs.batch" in event.message
        # The Stalled gauge follows the status written before the refused create: since when, and why.
        since = parse_time(stalled(get_migration(clients, namespace))["lastTransitionTime"])
        assert since is not None and stalled_since(namespace, "OperatorError") == since.timestamp()
        grant_jobs(clients, namespace)
        await wait_async(lambda: bool(jobs(clients, namespace)), timeout=30)
        await wait_async(lambda: stalled(get_migration(clients, namespace))["status"] == "False", timeout=30)
        await wait_async(lambda: stalled_since(namespace, "OperatorError") is None, timeout=30)

    asyncio.run(run())


def test_an_api_outage_under_a_minute_is_retried_quietly(
    clients: Kube, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """While the API server cannot be reached the operator retries with a short backoff; once it
    is back the Job is created, and nothing said Stalled or posted a Warning Event meanwhile."""
    create_migration(clients, namespace)
    key = (namespace, NAME)
    unreachable = client.Configuration()
    unreachable.host = "https://127.0.0.1:9"  # nothing listens: connection refused, as in an outage
    caplog.set_level(logging.INFO, "lockgate.reconciler")

    outages_before = reconcile_errors("true")

    async def run() -> None:
        reconciler = Reconciler(KubeApi(client.ApiClient(unreachable)), live_view(clients))
        reconciler.request(key)
        await asyncio.sleep(8)
        retries = [r for r in caplog.records if "retrying" in r.getMessage()]
        assert len(retries) >= 3 and all(r.levelno == logging.WARNING for r in retries)
        assert reconcile_errors("true") - outages_before == len(retries)  # counted as outages
        reconciler.kube = KubeApi(clients.api)  # the API server is back
        await wait_async(lambda: bool(jobs(clients, namespace)), timeout=30)

    asyncio.run(run())
    assert stalled(get_migration(clients, namespace))["status"] == "False"
    events = clients.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={NAME}").items
    assert [e.reason for e in events if e.type == "Warning"] == []


def stalled(body: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == "Stalled")


def stalled_event(clients: Kube, namespace: str) -> Any:
    events = clients.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={NAME}").items
    return next(e for e in events if e.reason == "OperatorError")


def wait_for(predicate: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
    return value


async def run_until(reconciler: Reconciler, key: Key, predicate: Callable[[], Any], timeout: float) -> None:
    """Run the reconciler as the operator does (requests, requeues, retries) until `predicate` holds;
    a request every second stands in for the watch events that would trigger passes."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, "timed out"
        reconciler.request(key)
        await asyncio.sleep(1)


async def wait_async(predicate: Callable[[], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.5)
