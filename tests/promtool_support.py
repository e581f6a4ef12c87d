"""The real promtool (Prometheus 3.16.0, built and cached by hack/build-promtool.sh), for the alert tests."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "hack" / "build-promtool.sh"


@functools.cache
def promtool_bin() -> Path:
    result = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=True)
    return Path(result.stdout.strip().splitlines()[-1])


def promtool(*args: str, cwd: Path) -> str:
    """promtool's output; raises with it when promtool fails (a rule that does not parse, a case that fails)."""
    result = subprocess.run([str(promtool_bin()), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout
