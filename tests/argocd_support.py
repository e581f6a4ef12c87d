"""Runs deploy/argocd/health.lua the way Argo CD runs a resource health check: Lua 5.1 (Argo CD
embeds gopher-lua, a Lua 5.1 VM) with only the base, table, string and math libraries and a
safe subset of os, the live object as the global `obj`, and the script's returned table read
as {status, message}."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lupa import lua51

REPO = Path(__file__).resolve().parents[1]
HEALTH_LUA = REPO / "deploy" / "argocd" / "health.lua"
ARGOCD_CM = REPO / "deploy" / "argocd" / "argocd-cm.yaml"
HEALTH_KEY = "resource.customizations.health.lockgate.dev_SchemaMigration"
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

# What Argo CD's VM leaves out: file and process access, module loading, the debug library.
_SANDBOX = """
io, debug, package, require, dofile, loadfile, load, loadstring, module = nil, nil, nil, nil, nil, nil, nil, nil, nil
local time, date, clock = os.time, os.date, os.clock
os = {time = time, date = date, clock = clock}
"""


def new_runtime() -> Any:
    lua = lua51.LuaRuntime(unpack_returned_tuples=False, register_eval=False, register_builtins=False)
    lua.execute(_SANDBOX)
    return lua


def to_lua(lua: Any, value: Any) -> Any:
    """A JSON-like Python value as Argo CD hands it to Lua: maps and lists become tables (lists
    1-indexed, in order), null becomes nil (the key is absent), scalars stay scalars."""
    if isinstance(value, Mapping):
        table = lua.table()
        for key, item in value.items():
            if item is not None:
                table[key] = to_lua(lua, item)
        return table
    if isinstance(value, list | tuple):
        table = lua.table()
        for index, item in enumerate(value, start=1):
            if item is not None:
                table[index] = to_lua(lua, item)
        return table
    return value


def evaluate(obj: Mapping[str, Any], script: str | None = None) -> tuple[str, str]:
    """The health (status, message) the script returns for `obj`."""
    lua = new_runtime()
    lua.globals().obj = to_lua(lua, obj)
    result = lua.execute(script if script is not None else HEALTH_LUA.read_text())
    if result is None or lua.eval("type")(result) != "table":
        raise AssertionError(f"the health script returned {result!r}, not a table")
    status, message = result["status"], result["message"]
    if status not in ARGO_STATUSES:
        raise AssertionError(f"the health script returned status {status!r}, not one of {sorted(ARGO_STATUSES)}")
    return status, message if message is not None else ""
