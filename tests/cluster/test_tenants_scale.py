"""300 tenants on the real node, one SchemaMigration: the app's new pods stay held at the gate while
the last tenant is still expanding (with every other tenant done), and pass once it has; every
tenant's schema has the version exactly once; the status stays small."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devcluster.kube import Kube, watch_until
from devcluster.workloads import condition, gated_deployment
from lockgate.controller.spec import GATE_CONDITION
from tests.gated_support import pod_condition
from tests.operator_fixtures import Migrations, rolled_out
from tests.runner_support import query
from tests.tenants_support import phase_is

pytestmark = pytest.mark.timeout(600, func_only=True)
TENANTS = [f"t{n:03}" for n in range(300)]
LAST = TENANTS[-1]
PER_POD = 25  # 12 indexes, 4 at a time: the last index starts only after others finished
# Every tenant gets its table; the last one takes its time, so that the others are done while it runs.
SCRIPTS = {
    "V1__items.sql": (
        "CREATE TABLE items (id int PRIMARY KEY);\n"
        f"SELECT pg_sleep(CASE WHEN current_schema() = '{LAST}' THEN 20 ELSE 0 END);"
    )
}


def applied_counts(database_url: str) -> dict[str, int]:
    """Per tenant schema, how many times V1 is recorded as applied in its own history table."""
    rows = query(
        database_url,
        "SELECT nspname, CASE WHEN to_regclass(format('%I.lockgate_schema_history', nspname)) IS NULL THEN 0"
        " ELSE (xpath('/row/n/text()', query_to_xml(format("
        "'SELECT count(*) AS n FROM %I.lockgate_schema_history WHERE script = ''V1__items.sql'' AND success',"
        " nspname), false, true, '')))[1]::text::int END FROM pg_namespace WHERE nspname ~ '^t[0-9]{3}$'",
    )
    return dict(rows)


def held(kube: Kube, namespace: str) -> list[Any]:
    """The app's pods, each of which the gate holds back (gate condition False)."""
    found = kube.core.list_namespaced_pod(namespace, label_selector="app=web").items
    return [p for p in found if (gate := pod_condition(p, GATE_CONDITION)) is not None and gate.status == "False"]


def test_300_tenants_the_gate_holds_until_the_last_one_expanded_and_each_has_the_version_once(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, database_url: str
) -> None:
    query(
        database_url,
        "DO $$ BEGIN FOR n IN 0..299 LOOP EXECUTE format('CREATE SCHEMA t%s', lpad(n::text, 3, '0')); END LOOP; END $$",
    )
    run_operator()
    migrations.create(
        "tenants",
        "1",
        migrations.scripts("tenants-r1", SCRIPTS),
        targets={"schemas": TENANTS, "maxParallel": 4, "perPod": PER_POD},
        backoffLimit=0,
        background={"enabled": False},
        contract={"enabled": False},
    )
    kube.apps.create_namespaced_deployment(namespace, gated_deployment("web", "tenants", "1", replicas=1))

    # Every index but the last has finished; the last index's pod is in the last tenant's sleep.
    almost = migrations.wait(
        "tenants",
        lambda b: (
            ((b.get("status") or {}).get("targets") or {}).get("phases", {}).get("expand", {}).get("succeeded")
            == len(TENANTS) - PER_POD
        ),
        timeout=300,
    )
    assert "appliedVersion" not in almost["status"] and condition(almost, "Ready")["status"] != "True"
    assert applied_counts(database_url)[LAST] == 0  # the last tenant has not recorded V1 yet
    waiting = watch_until(
        kube.core.list_namespaced_pod,
        lambda p: (gate := pod_condition(p, GATE_CONDITION)) is not None and gate.status == "False",
        namespace=namespace,
        label_selector="app=web",
    )
    assert pod_condition(waiting, GATE_CONDITION).reason == "WaitingForSchema"
    assert applied_counts(database_url)[LAST] == 0 and held(kube, namespace)  # still held, still running

    done = migrations.wait("tenants", phase_is("Complete"), timeout=240)
    assert done["status"]["appliedVersion"] == "1" and condition(done, "Ready")["status"] == "True"
    assert done["status"]["targets"]["summary"] == "300/300 expand"
    assert len(json.dumps(done["status"])) < 16 * 1024  # counts and a bounded list, not one entry per tenant
    rolled_out(kube, namespace, "web", timeout=120)
    assert not held(kube, namespace)
    assert applied_counts(database_url) == dict.fromkeys(TENANTS, 1)
    [job] = migrations.jobs("tenants")
    assert (job.spec.completions, job.spec.parallelism) == (len(TENANTS) // PER_POD, 4)
