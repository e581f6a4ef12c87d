"""The real helm binary (built by hack/build-cluster-bin.sh) and the chart, for the chart tests."""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from devcluster.binaries import cluster_bin_dir
from devcluster.workloads import IDLE_IMAGE

REPO = Path(__file__).resolve().parents[1]
APP_CHART = REPO / "examples" / "app-chart"  # a SchemaMigration and the Deployment gated on it
CHART = REPO / "charts" / "lockgate"


@functools.cache
def bin_dir() -> Path:
    return cluster_bin_dir()


def helm(
    *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 300, binary: str = "helm"
) -> subprocess.CompletedProcess[str]:
    """Run helm, Helm 4 unless `binary` is "helm3" (its cache, config and data under the temp dir, not the
    user's); raises with helm's output on failure."""
    state = Path(tempfile.gettempdir()) / "lockgate-helm"
    env = {**os.environ, **{f"HELM_{kind}_HOME": str(state / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    result = subprocess.run([str(bin_dir() / binary), *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def values_args(values: Mapping[str, Any] | None, directory: Path) -> list[str]:
    if not values:
        return []
    path = directory / "values.yaml"
    path.write_text(yaml.safe_dump(dict(values)))
    return ["--values", str(path)]


def template(
    values: Mapping[str, Any] | None = None,
    extra: Sequence[str] = (),
    release: str = "lg",
    namespace: str = "lockgate-system",
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as tmp:
        return helm(
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            *values_args(values, Path(tmp)),
            *extra,
            check=check,
        )


def render(values: Mapping[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """The chart's manifests for these values, parsed."""
    return [doc for doc in yaml.safe_load_all(template(values, **kwargs).stdout) if doc]


def only(docs: Sequence[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: Sequence[Mapping[str, Any]], kind: str) -> Any:
    found = only(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def split_image(image: str) -> tuple[str, str]:
    """`lockgate:dev` -> (`lockgate`, `dev`); a reference without a tag gets `latest`."""
    slash, colon = image.rfind("/"), image.rfind(":")
    return (image[:colon], image[colon + 1 :]) if colon > slash else (image, "latest")


def install_app(
    cluster: Any, namespace: str, name: str, config_map: str, image: str, **values: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    sets = {
        "migrations.image": image,
        "migrations.imagePullPolicy": "IfNotPresent",
        "migrations.configMap": config_map,
        "app.image": IDLE_IMAGE,
        **values,
    }
    args = [f"--set={key}={value}" for key, value in sets.items()]
    started = time.monotonic()
    result = helm(
        "install", name, str(APP_CHART), "-n", namespace, "--wait", "--timeout=300s", *args,
        kubeconfig=Path(cluster.kubeconfig), check=False, timeout=330,
    )  # fmt: skip
    return result, time.monotonic() - started
