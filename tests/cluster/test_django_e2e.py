"""The Django example (examples/django) on the real node, the operator's way, in a namespace that
enforces Pod Security's `restricted` level: the app and the migration Jobs run non-root with a
read-only root filesystem. One walk through three releases:

1. the app's pods start before any migration and wait at the gate; the SchemaMigration's expand Job
   runs `manage.py migrate ledger 0001_initial` (what release 1's image, which held only 0001, ran);
2. release 2 under steady traffic: expand (`migrate`: the data migration 0002, `text` in 0003) while
   release 1 serves and writes `body`, the gated rollout, contract (`migrate` with ledger_contract:
   drops `body`) once release 1 is gone. Every request served;
3. release 3 with a migration that raises: Stalled with Django's own error line, no new pod passes
   the gate, release 2 keeps serving; the fixed spec goes on, and the data migration ran once."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devcluster.fixtures import namespace_name
from devcluster.kube import Kube
from devcluster.postgres import in_cluster_url
from devcluster.shop import Traffic, manifests
from tests.django_support import DJANGO, EXPAND_MIGRATIONS
from tests.gated_support import (
    GatedApp,
    required,
    restricted_namespace,
    wait_for,
)
from tests.runner_support import query

APP_IMAGE = "lockgate-django:dev"
BROKEN_LINE = "RuntimeError: ledger_broken 0001: price list missing, cannot backfill notes"
RELEASE_1_MIGRATE = ["python", "manage.py", "migrate", "--noinput", "ledger", "0001_initial"]
CONTRACT = ("ledger_contract", "0001_drop_note_body")
COLUMNS = "SELECT column_name FROM information_schema.columns WHERE table_name = 'ledger_note' ORDER BY 1"


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    with restricted_namespace(kube, namespace_name(request.node.name)) as name:
        yield name


def release_1(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The example's manifests (release 2) as release 1 shipped them: its migration target, its code."""
    release = copy.deepcopy(documents)
    for document in release:
        if document["kind"] == "SchemaMigration":
            spec = document["spec"]
            spec["version"] = "1"
            spec["expand"]["command"] = spec["contract"]["command"] = RELEASE_1_MIGRATE
        elif document["kind"] == "Deployment":
            template = document["spec"]["template"]
            template["metadata"]["annotations"]["lockgate.dev/requires-version"] = "1"
            env = template["spec"]["containers"][0]["env"]
            next(e for e in env if e["name"] == "LEDGER_RELEASE")["value"] = "1"
    return release


@pytest.mark.timeout(900)
def test_django_releases_gate_the_app_serve_every_request_and_a_broken_migration_stalls(
    cluster: Any, kube: Kube, namespace: str, database_url: str, run_operator: Callable[..., Any]
) -> None:
    run_operator()
    example = manifests(APP_IMAGE, APP_IMAGE, DJANGO / "k8s")
    ledger = GatedApp(kube, namespace, "ledger-web", "ledger", release_1(example))
    ledger.secrets(in_cluster_url(database_url, cluster.node_ip), "ledger-db", "ledger-app-db")

    # 1. The app first: its pods start and answer their probe, but no SchemaMigration has expanded "1".
    ledger.create("Deployment")
    ledger.create("Service")
    ledger.wait_held(2)
    ledger.create("SchemaMigration")
    wait_for("release 1", lambda: ledger.released("1"))
    ledger.assert_ready_after_expand()
    assert ledger.get("/?text=first") == {"note": 1, "notes": 1, "seeds": 0}
    assert query(database_url, COLUMNS) == [("body",), ("id",)]

    # 2. Release 2 under traffic: the SchemaMigration as the example has it, then the app's new code.
    traffic = Traffic(*ledger.service_address(), path="/").start()
    wait_for("the Service to serve", lambda: traffic.report.served >= 20, timeout=60)
    release_2 = next(d for d in example if d["kind"] == "SchemaMigration")["spec"]
    ledger.patch_migration({k: release_2[k] for k in ("version", "expand", "contract")})
    ledger.require("2", {"LEDGER_RELEASE": "2"})
    wait_for("release 2", lambda: ledger.released("2"), timeout=300)
    report = traffic.stop()
    print(f"ledger release 1 -> 2 under traffic: {report.summary()}")
    assert report.failed == 0, report.summary()
    assert report.served > 100, report.summary()  # traffic ran through the whole release
    assert {required(p) for p in ledger.pods()} == {"2"}
    assert query(database_url, "SELECT app, name FROM django_migrations ORDER BY id") == [*EXPAND_MIGRATIONS, CONTRACT]
    assert query(database_url, COLUMNS) == [("id",), ("text",)]  # contract dropped release 1's body

    # 3. A migration that raises: Stalled with Django's line; the new pod stays out, release 2 serves.
    ledger.patch_migration({"version": "3", "env": [{"name": "LEDGER_BROKEN_MIGRATION", "value": "1"}]})
    ledger.require("3")
    ledger.assert_stalls_with(BROKEN_LINE, "3")
    assert ledger.get("/?text=during")["seeds"] == 1

    # The fix is a spec change (here: without the broken migration); the gate opens, the rollout ends.
    ledger.patch_migration({"env": []})
    wait_for("release 3", lambda: ledger.released("3"))
    assert {required(p) for p in ledger.pods()} == {"3"}
    assert ledger.get("/?text=after")["seeds"] == 1  # the data migration ran once in all of this
