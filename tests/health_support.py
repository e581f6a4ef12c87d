"""What outside clients read from a status, computed by their own engines in hack/health (built and
cached by hack/build-health.sh): kstatus `status.Compute` (Helm 4 --wait, Flux, kpt, Config Sync) and
an Argo CD health script run as Argo CD runs resource.customizations (gopher-lua with only base,
table, package and a safe os)."""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "hack" / "build-health.sh"
HEALTH_LUA = REPO / "deploy" / "argocd" / "health.lua"
ARGOCD_CM = REPO / "deploy" / "argocd" / "argocd-cm.yaml"
HEALTH_KEY = "resource.customizations.health.lockgate.dev_SchemaMigration"

Verdict = tuple[str, str]  # (status, message)


@functools.cache
def health_bin() -> Path:
    result = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=True)
    return Path(result.stdout.strip().splitlines()[-1])


def _run(args: list[str], objects: list[Mapping[str, Any]]) -> list[Verdict]:
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    result = subprocess.run([str(health_bin()), *args], input=body, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"health {' '.join(args)} failed: {result.stderr}")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return [(row["status"], row["message"]) for row in rows]


def kstatus_all(objects: list[Mapping[str, Any]]) -> list[Verdict]:
    """kstatus's (status, message) of each object: InProgress, Current, Failed, ..."""
    return _run(["kstatus"], objects)


def kstatus(obj: Mapping[str, Any]) -> Verdict:
    return kstatus_all([obj])[0]


def argocd_health(obj: Mapping[str, Any], script: str | None = None) -> Verdict:
    """Argo CD's (status, message) from health.lua, or from `script` (the text of one)."""
    if script is None:
        return _run(["argocd", str(HEALTH_LUA)], [obj])[0]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as file:
        file.write(script)
        file.flush()
        return _run(["argocd", file.name], [obj])[0]
