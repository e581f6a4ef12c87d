"""What `lockgate status` draws and `lockgate wait` decides (cli/status_view.py, cli/wait.py), and the cluster commands' refusals."""

from __future__ import annotations

from lockgate.cli.status_view import progress_bar, render
from lockgate.cli.wait import verdict
from lockgate.shared.versions import Version
from tests.runner_support import lockgate
from tests.unit.bodies import body


def test_wait_verdict() -> None:
    smig = {
        "status": {
            "appliedVersion": "2",
            "phase": "Failed",
            "conditions": [{"type": "Stalled", "status": "True", "message": "expand Job failed"}],
        }
    }
    assert verdict(smig, Version.parse("2"))[0]
    waiting, message = verdict(smig, Version.parse("3"))
    assert not waiting and "stalled: expand Job failed" in message
    assert verdict(None, Version.parse("1")) == (False, "the SchemaMigration does not exist (yet)")


def test_status_view_shows_what_matters() -> None:
    smig = body() | {
        "status": {
            "appliedVersion": "2",
            "phase": "Failed",
            "conditions": [
                {"type": "Ready", "status": "False", "message": "expand Job failed"},
                {"type": "Stalled", "status": "True", "message": "fix it"},
            ],
            "gate": {
                "workloads": [
                    {
                        "kind": "Deployment",
                        "name": "web",
                        "requiresVersion": "3",
                        "updated": 1,
                        "desired": 2,
                        "available": 2,
                        "rolledOut": False,
                    }
                ],
                "podsWaiting": 1,
                "podsReady": 2,
            },
            "history": [
                {
                    "phase": "expand",
                    "version": "3",
                    "job": "shop-expand-3-x",
                    "result": "Failed",
                    "applied": 0,
                    "error": "[42P01] nope",
                }
            ],
        }
    }
    text = "\n".join(render(smig))
    for expected in (
        "ns/shop: target 3, applied 2, phase Failed, ready False",
        "Deployment/web requires 3: 1/2 updated",
        "1 waiting, 2 passed",
        "shop-expand-3-x: Failed",
        "error: [42P01] nope",
        "STALLED: fix it",
    ):
        assert expected in text


def test_status_view_draws_the_background_progress() -> None:
    progress = {"script": "A3__fill.sql", "percent": 45.0, "summary": "45% 4,500 rows, 1m10s left"}
    text = "\n".join(render(body() | {"status": {"phase": "Backfilling", "progress": progress}}))
    assert "background A3__fill.sql: [#########...........] 45% 4,500 rows, 1m10s left" in text
    assert progress_bar(None, 4) == "[....]" and progress_bar(100.0, 4) == "[####]"


def test_status_view_names_the_failed_targets() -> None:
    failed = [{"phase": "expand", "target": "tenant_b", "error": "V3__x.sql line 1: [42P07] exists"}]
    targets = {"kind": "schema", "total": 3, "summary": "2/3 expand, 1 failed", "failed": failed}
    text = "\n".join(render(body() | {"status": {"phase": "Failed", "targets": targets}}))
    assert "  3 schema targets: 2/3 expand, 1 failed\n    tenant_b (expand): V3__x.sql line 1: [42P07] exists" in text


def test_cluster_commands_fail_clearly_without_credentials_or_arguments(tmp_path) -> None:
    no_credentials = lockgate("status", KUBECONFIG=str(tmp_path / "missing"), HOME=str(tmp_path))
    assert no_credentials.code == 2 and "no Kubernetes credentials: set KUBECONFIG" in no_credentials.err
    no_name = lockgate("wait", "--version", "3", HOME=str(tmp_path))
    assert no_name.code == 2 and "lockgate wait needs --name and --version" in no_name.err
    bad_version = lockgate("wait", "--name", "shop", "--version", "three")
    assert bad_version.code == 2 and "dotted numbers" in bad_version.err
