"""How the reconciler backs off and when a failure shows (controller/reconciler.py, controller/kube_client.py)."""

from __future__ import annotations

from kubernetes.client.exceptions import ApiException

from lockgate.controller.kube_client import is_transient
from lockgate.controller.reconciler import TRANSIENT_GRACE, Action, next_failure


def test_outages_stay_quiet_for_a_minute_and_refusals_show_at_once() -> None:
    outage = ApiException(status=503, reason="Service Unavailable")
    assert is_transient(outage) and is_transient(ConnectionRefusedError()) and is_transient(ApiException(status=0))
    assert not is_transient(ApiException(status=403)) and not is_transient(ApiException(status=422))
    first = next_failure(None, "503", Action.STATUS, True, now=100.0)
    later = next_failure(first, "503", Action.STATUS, True, now=130.0)
    assert (later.count, later.since) == (2, 100.0)
    assert not later.shown(100.0 + TRANSIENT_GRACE - 1) and later.shown(100.0 + TRANSIENT_GRACE)
    assert [next_failure(None, "x", Action.STATUS, True, 0).backoff(), later.backoff()] == [1.0, 2.0]
    refused = next_failure(later, "403", Action.CREATE, False, now=131.0)
    assert refused.shown(131.0) and (refused.count, refused.since, refused.backoff()) == (1, 131.0, 5.0)
