"""The planner decides from scripts and history alone (pure): no database here."""

from __future__ import annotations

from datetime import UTC, datetime

from lockgate.runner.history import HistoryRow, derive_state
from lockgate.runner.inventory import inventory
from lockgate.runner.plan import plan_baseline, plan_migrate, plan_undo
from lockgate.runner.scripts import Script, checksum, parse_name
from lockgate.shared.phases import BASELINE, EXEC, REPEATABLE, UNDO, Phase
from lockgate.shared.versions import Version


def script(name: str, sql: str = "SELECT 1;") -> Script:
    kind, version, description = parse_name(name)
    return Script(kind, version, description, name, sql, checksum(sql))


def row(rank: int, s: Script | None, phase: str, success: bool = True, version: str | None = None) -> HistoryRow:
    v = Version.parse(version) if version else (s.version if s else None)
    return HistoryRow(
        rank,
        v,
        phase,
        s.description if s else "x",
        s.name if s else "x",
        s.checksum if s else None,
        "tester",
        datetime(2026, 1, 2, tzinfo=UTC),
        1,
        success,
    )


V1, V2, V3 = script("V1__a.sql"), script("V2__b.sql"), script("V3__c.sql")
A2, C2, C3 = script("A2__fill.sql"), script("C2__drop.sql"), script("C3__drop_more.sql")
R = script("R__views.sql", "CREATE VIEW v AS SELECT 1;")


def names(plan) -> list[str]:
    return [s.name for s in plan.pending]


def test_fresh_database_gets_every_expand_script_then_repeatables() -> None:
    plan = plan_migrate([V3, R, V1, V2, A2, C2], derive_state([]), Phase.EXPAND)
    assert names(plan) == ["V1__a.sql", "V2__b.sql", "V3__c.sql", "R__views.sql"]
    assert plan.problems == []


def test_target_stops_at_the_version() -> None:
    assert names(plan_migrate([V1, V2, V3], derive_state([]), Phase.EXPAND, Version.parse("2"))) == [
        "V1__a.sql",
        "V2__b.sql",
    ]


def test_a_target_no_script_and_no_history_has_is_refused() -> None:
    [problem] = plan_migrate([V1, V3], derive_state([]), Phase.EXPAND, Version.parse("2")).problems
    assert "no migration for version 2" in problem and "found V1__a.sql, V3__c.sql" in problem
    [empty] = plan_migrate([], derive_state([]), Phase.BACKGROUND, Version.parse("1")).problems
    assert "found no migration files" in empty
    # any kind of script of the version will do, and so does a baseline at it
    assert plan_migrate([V1, V2], derive_state([]), Phase.BACKGROUND, Version.parse("2")).problems == []
    baselined = derive_state([row(1, None, BASELINE, version="5")])
    assert plan_migrate([], baselined, Phase.EXPAND, Version.parse("5")).problems == []


def test_applied_scripts_are_not_pending_and_repeatables_rerun_only_when_changed() -> None:
    history = [row(1, V1, "expand"), row(2, R, REPEATABLE)]
    assert names(plan_migrate([V1, V2, R], derive_state(history), Phase.EXPAND)) == ["V2__b.sql"]
    edited_r = script("R__views.sql", "CREATE VIEW v AS SELECT 2;")
    assert names(plan_migrate([V1, V2, edited_r], derive_state(history), Phase.EXPAND)) == ["V2__b.sql", "R__views.sql"]


def test_an_edited_applied_script_is_refused() -> None:
    edited = script("V1__a.sql", "SELECT 'changed';")
    plan = plan_migrate([edited, V2], derive_state([row(1, V1, "expand")]), Phase.EXPAND)
    assert len(plan.problems) == 1
    assert "V1__a.sql was edited after it was applied" in plan.problems[0]


def test_out_of_order_is_refused_unless_allowed() -> None:
    state = derive_state([row(1, V1, "expand"), row(2, V3, "expand")])
    refused = plan_migrate([V1, V2, V3], state, Phase.EXPAND)
    assert any("V2__b.sql is older than the applied V3" in p for p in refused.problems)
    allowed = plan_migrate([V1, V2, V3], state, Phase.EXPAND, out_of_order=True)
    assert allowed.problems == [] and names(allowed) == ["V2__b.sql"]


def test_a_missing_applied_script_is_refused_but_future_versions_are_fine() -> None:
    state = derive_state([row(1, V1, "expand"), row(2, V2, "expand"), row(3, V3, "expand")])
    assert any(
        "V2__b.sql (expand 2) is recorded as applied but is missing" in p
        for p in plan_migrate([V1, V3], state, Phase.EXPAND).problems
    )
    older_image = plan_migrate([V1, V2], state, Phase.EXPAND)  # an older image sees V3 from the future
    assert older_image.problems == [] and older_image.pending == []
    assert any("newer expand versions" in n for n in older_image.notes)


def test_background_and_contract_wait_for_their_earlier_phases() -> None:
    scripts = [V1, V2, A2, C2]
    nothing = derive_state([])
    assert any(
        "A2__fill.sql cannot run before V1__a.sql, V2__b.sql (expand)" in p
        for p in plan_migrate(scripts, nothing, Phase.BACKGROUND).problems
    )
    expanded = derive_state([row(1, V1, "expand"), row(2, V2, "expand")])
    assert plan_migrate(scripts, expanded, Phase.BACKGROUND).problems == []
    contract = plan_migrate(scripts, expanded, Phase.CONTRACT)
    assert any("C2__drop.sql cannot run before A2__fill.sql (background)" in p for p in contract.problems)
    done = derive_state([row(1, V1, "expand"), row(2, V2, "expand"), row(3, A2, "background")])
    assert names(plan_migrate(scripts, done, Phase.CONTRACT)) == ["C2__drop.sql"]


def test_contract_of_a_later_version_needs_that_versions_expand() -> None:
    state = derive_state([row(1, V1, "expand"), row(2, V2, "expand"), row(3, A2, "background")])
    plan = plan_migrate([V1, V2, V3, A2, C2, C3], state, Phase.CONTRACT)
    assert names(plan) == ["C2__drop.sql", "C3__drop_more.sql"]
    assert any("C3__drop_more.sql cannot run before V3__c.sql" in p for p in plan.problems)
    assert not any("C2__drop.sql" in p for p in plan.problems)


def test_a_partially_failed_migration_blocks_until_repaired() -> None:
    state = derive_state([row(1, V1, "expand"), row(2, V2, "expand", success=False)])
    plan = plan_migrate([V1, V2], state, Phase.EXPAND)
    assert any("V2__b.sql failed part-way" in p and "lockgate repair" in p for p in plan.problems)
    recovered = derive_state([row(1, V1, "expand"), row(2, V2, "expand", success=False), row(3, V2, "expand")])
    assert plan_migrate([V1, V2], recovered, Phase.EXPAND).problems == []


def test_undo_runs_newest_first_and_needs_undo_scripts() -> None:
    u2, u3 = script("U2__undo_b.sql"), script("U3__undo_c.sql")
    state = derive_state([row(1, V1, "expand"), row(2, V2, "expand"), row(3, V3, "expand")])
    assert names(plan_undo([V1, V2, V3, u2, u3], state, Version.parse("1"))) == ["U3__undo_c.sql", "U2__undo_b.sql"]
    missing = plan_undo([V1, V2, V3, u3], state, Version.parse("1"))
    assert any("V2 has no U2__<description>.sql" in p for p in missing.problems)


def test_undo_refuses_after_contract_and_undone_versions_become_pending_again() -> None:
    u2 = script("U2__undo_b.sql")
    contracted = derive_state([row(1, V1, "expand"), row(2, V2, "expand"), row(3, C2, "contract")])
    assert any("C2 was applied" in p for p in plan_undo([V1, V2, u2, C2], contracted, Version.parse("1")).problems)
    undone = derive_state([row(1, V1, "expand"), row(2, V2, "expand"), row(3, u2, UNDO)])
    assert names(plan_migrate([V1, V2], undone, Phase.EXPAND)) == ["V2__b.sql"]


def test_baseline_counts_older_versions_as_applied_and_only_once() -> None:
    state = derive_state([row(1, None, BASELINE, version="2")])
    assert names(plan_migrate([V1, V2, V3], state, Phase.EXPAND)) == ["V3__c.sql"]
    assert plan_baseline(state, Version.parse("3"))
    assert plan_baseline(derive_state([]), Version.parse("3")) == []


def test_inventory_lists_every_phase() -> None:
    state = derive_state([row(1, V1, "expand")])
    walk = {"script": "A2__fill.sql", "state": "paused", "rows": 10}
    listing = inventory([V1, V2, A2, C2, R], state, {"A2__fill.sql": walk}).sections()
    assert list(listing) == ["expand", "background", "contract", "repeatable", "exec"]
    assert [(e.script, e.state) for e in listing["expand"]] == [("V1__a.sql", "applied"), ("V2__b.sql", "pending")]
    assert [(e.state, e.progress) for e in listing["background"]] == [("pending", walk)]
    assert [e.script for e in listing["repeatable"]] == ["R__views.sql"]


def test_inventory_as_json_keeps_its_keys() -> None:
    """`info --json` is read by scripts: the keys stay, and only a recorded walk adds `progress`."""
    document = inventory([V1, A2], derive_state([row(1, V1, "expand")])).document()
    assert document["expand"][0] == {
        "version": "1",
        "script": "V1__a.sql",
        "description": "a",
        "state": "applied",
        "installed_on": "2026-01-02 00:00:00+00:00",
        "installed_by": "tester",
        "ms": 1,
    }
    assert "progress" not in document["background"][0]


def test_exec_runs_are_audit_only_even_failed_ones() -> None:
    """A `lockgate exec` row, failed or labelled with a version, never blocks or applies anything."""
    runs = [row(2, None, EXEC, success=False, version="2"), row(3, None, EXEC, version="3")]
    state = derive_state([row(1, V1, "expand"), *runs])
    assert state.failed == {} and state.is_applied(Phase.EXPAND, Version.parse("2")) is False
    plan = plan_migrate([V1, V2], state, Phase.EXPAND)
    assert names(plan) == ["V2__b.sql"] and plan.problems == []
    assert [e.installed_by for e in inventory([V1, V2], state).exec_runs] == ["tester", "tester"]
    assert state.exec_runs == runs
