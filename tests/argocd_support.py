"""examples/argocd/shop as its Git repository holds it, commit by commit, for the Argo CD sync tests:
the example is release 2; release 1, a release 2 with a broken expand script and one with a PostSync
hook are derived from it. And a recorder of pod events, to order the hook and contract against the
old pods' end."""

from __future__ import annotations

import copy
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import yaml
from kubernetes import watch

from devcluster.binaries import REPO
from devcluster.kube import Kube
from devcluster.shop import with_local_images

EXAMPLE = REPO / "examples" / "argocd" / "shop"
APPLICATION = REPO / "examples" / "argocd" / "applications" / "shop.yaml"
PATH = "shop"  # the example's folder in the test's repository, the Application's source path
CONTRACT_DELAY = "5s"  # the example waits 10 minutes after the rollout; a test has no such time
BROKEN_SCRIPT = "ALTER TABLE customer ADD COLUMN email text;  -- the table is customers\n"
BROKEN_CAUSE = 'relation "customer" does not exist'
HOOK = "contract-hook"  # the PostSync hook Job


def example(lockgate_image: str, app_image: str) -> list[dict[str, Any]]:
    """Release 2 as in examples/argocd/shop, on the locally built images."""
    documents = []
    for path in sorted(EXAMPLE.glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for document in documents:
        with_local_images(document, lockgate_image, app_image)
        if document["kind"] == "SchemaMigration":
            document["spec"]["contract"]["delay"] = CONTRACT_DELAY
    return documents


def application(name: str, repo_url: str, namespace: str) -> dict[str, Any]:
    """The example's Application, syncing PATH of `repo_url` into `namespace`."""
    app = yaml.safe_load(APPLICATION.read_text())
    app["metadata"]["name"] = name
    app["spec"]["source"].update(repoURL=repo_url, path=PATH)
    app["spec"]["destination"]["namespace"] = namespace
    return dict(app)


def of_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in documents if d["kind"] == kind)


def with_scripts(documents: list[dict[str, Any]], name: str, scripts: dict[str, str]) -> list[dict[str, Any]]:
    """The release's scripts in a new immutable ConfigMap `name`, which the SchemaMigration points at."""
    changed = copy.deepcopy(documents)
    config_map = of_kind(changed, "ConfigMap")
    config_map["metadata"]["name"], config_map["data"] = name, scripts
    of_kind(changed, "SchemaMigration")["spec"]["migrations"]["configMap"]["name"] = name
    return changed


def release_1(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The commit before the example: version 1's scripts, schema and code."""
    scripts = of_kind(documents, "ConfigMap")["data"]
    first = {name: text for name, text in scripts.items() if re.match(r"[VAC]1__", name)}
    older = with_scripts(documents, "shop-migrations-1", first)
    of_kind(older, "SchemaMigration")["spec"]["version"] = "1"
    template = of_kind(older, "Deployment")["spec"]["template"]
    template["metadata"]["annotations"]["lockgate.dev/requires-version"] = "1"
    for variable in template["spec"]["containers"][0]["env"]:
        if variable["name"] == "RELEASE":
            variable["value"] = "1"
    return older


def broken(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Release 2 whose expand script names a table that does not exist (a ConfigMap of its own:
    the fix is then a new ConfigMap, as with any immutable one)."""
    scripts = of_kind(documents, "ConfigMap")["data"]
    return with_scripts(documents, "shop-migrations-2-rc1", {**scripts, "V2__add_email.sql": BROKEN_SCRIPT})


def tree(documents: list[dict[str, Any]]) -> dict[str, str]:
    """The repository's files: one manifest per object under PATH."""
    return {f"{PATH}/{d['kind'].lower()}-{d['metadata']['name']}.yaml": yaml.safe_dump(d) for d in documents}


def with_post_sync_hook(documents: list[dict[str, Any]], image: str) -> list[dict[str, Any]]:
    """The release with an Argo CD PostSync hook, where teams without lockgate put their contract step."""
    hook = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": HOOK,
            "annotations": {
                "argocd.argoproj.io/hook": "PostSync",
                "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
            },
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "contract",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python", "-c", "pass"],
                        }
                    ],
                }
            },
        },
    }
    return [*documents, hook]


def pod_role(pod: Any) -> str:
    """What a pod is for the timeline: `release N` (the app's code) or `job NAME` (a Job's)."""
    labels, annotations = pod.metadata.labels or {}, pod.metadata.annotations or {}
    if "job-name" in labels:
        return f"job {labels['job-name']}"
    return f"release {annotations.get('lockgate.dev/requires-version', '?')}"


@dataclass
class PodEvents:
    """Every pod event in a namespace in the API server's order (one watch, resumed where it broke
    off): what came first needs no clock, e.g. whether old pods were still there when a Job's appeared."""

    kube: Kube
    namespace: str
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (ADDED|MODIFIED|DELETED, pod, role)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> PodEvents:
        listing = self.kube.core.list_namespaced_pod(self.namespace)
        self.events += [("ADDED", pod.metadata.name, pod_role(pod)) for pod in listing.items]
        threading.Thread(target=self._run, args=(listing.metadata.resource_version,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self, version: str) -> None:
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                self.kube.core.list_namespaced_pod, self.namespace, resource_version=version, timeout_seconds=5
            )
            for event in stream:
                pod = event["object"]
                self.events.append((event["type"], pod.metadata.name, pod_role(pod)))
                version = pod.metadata.resource_version

    def first(self, kind: str, role: str) -> int:
        """The position of the first `kind` event of a pod whose role starts with `role`."""
        return next(i for i, (t, _, r) in enumerate(self.events) if t == kind and r.startswith(role))

    def last(self, kind: str, role: str) -> int:
        return max(i for i, (t, _, r) in enumerate(self.events) if t == kind and r.startswith(role))
