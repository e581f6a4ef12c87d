"""A spec an older CRD let through but lockgate cannot use, through the real reconciler and API
server: the operator writes a lasting Stalled status and one Warning Event, and creates no Job.

Today's CRD refuses such a spec, and the CRD is shared with other test runs, so the test stores a
valid object and hands the reconciler the body an older CRD would have stored."""

from __future__ import annotations

import asyncio
from typing import Any

from devcluster.kube import Kube
from lockgate.controller.kube import KubeApi
from lockgate.controller.observed import Observed
from lockgate.controller.reconciler import Key, Reconciler
from lockgate.controller.spec import GROUP, PLURAL, VERSION, parse_migration
from tests.operator_fixtures import migration_body

NAME = "shop"


def as_an_older_crd_stored_it(clients: Kube) -> Any:
    def observe(key: Key) -> Observed:
        namespace, name = key
        body = clients.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        body["spec"]["contract"] = {"delay": "99999999999h"}  # an older CRD had no bound
        return Observed(parse_migration(body), namespace, name)

    return observe


def test_an_unusable_spec_stalls_for_good_with_the_field_and_the_fix(
    kube: Kube, crd: dict[str, Any], namespace: str
) -> None:
    body = migration_body(NAME, "1", "registry.invalid/shop:1", "db")
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    reconciler = Reconciler(KubeApi(kube.api), as_an_older_crd_stored_it(kube))
    asyncio.run(reconciler.reconcile((namespace, NAME)))
    stored = kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME)
    stalled = next(c for c in stored["status"]["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
    assert "spec.contract.delay: 99999999999h is longer than 8760h" in stalled["message"]
    assert "shorten it, or set contract.requireApproval" in stalled["message"]
    assert stored["status"]["phase"] == "Failed" and not kube.batch.list_namespaced_job(namespace).items
    asyncio.run(reconciler.reconcile((namespace, NAME)))  # a second pass changes nothing: no flapping
    again = kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME)
    assert again["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
    events = kube.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={NAME}").items
    assert [(e.type, e.reason) for e in events] == [("Warning", "InvalidSpec")]
