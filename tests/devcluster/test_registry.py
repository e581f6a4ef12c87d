"""The cluster's registry (devcluster/registry.py): its pure configuration, then the node pulling
from it as any cluster pulls, by tag and by digest, with image garbage collection on; and from a
second registry that requires a login, with a pull secret."""

from __future__ import annotations

import base64
import json
import re
import secrets
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from devcluster import node
from devcluster.binaries import registry_bin
from devcluster.clusters import LocalCluster
from devcluster.images.recipes import PAUSE_IMAGE, Image
from devcluster.images.targets import build_images
from devcluster.kube import Kube, watch_until
from devcluster.registry import (
    Registry,
    archive_config_digest,
    docker_config,
    holds,
    hosts_toml,
    name_and_tag,
    registry_config,
    repository,
)

# --- the pure core ----------------------------------------------------------------------------


def test_a_ref_s_repository_is_its_path_inside_its_registry() -> None:
    assert repository("docker.io/library/lockgate:dev") == "library/lockgate:dev"
    assert repository("registry.k8s.io/pause:3.10") == "pause:3.10"
    assert repository("127.0.0.1:5000/charts/lockgate:0.1.0") == "charts/lockgate:0.1.0"
    for short in ("lockgate:dev", "library/lockgate:dev"):  # Docker's short names: which registry is a guess
        with pytest.raises(ValueError, match="not a fully qualified"):
            repository(short)


def test_a_ref_s_name_and_tag() -> None:
    assert name_and_tag("docker.io/library/lockgate:dev") == ("library/lockgate", "dev")
    assert name_and_tag("127.0.0.1:5000/pause:3.10") == ("pause", "3.10")
    with pytest.raises(ValueError, match="names no tag"):
        name_and_tag("127.0.0.1:5000/library/lockgate")


def test_a_tag_already_holds_an_archive_s_image_when_its_config_is_the_same() -> None:
    config = "sha256:" + "ab" * 32
    buildah = json.dumps([{"Config": f"{'ab' * 32}.json", "RepoTags": ["x"], "Layers": []}])
    docker = json.dumps([{"Config": f"blobs/sha256/{'ab' * 32}", "RepoTags": ["x"], "Layers": []}])
    assert archive_config_digest(buildah) == archive_config_digest(docker) == config
    assert holds({"schemaVersion": 2, "config": {"digest": config}}, config)
    assert not holds({"schemaVersion": 2, "config": {"digest": "sha256:" + "cd" * 32}}, config)
    assert not holds({"manifests": []}, config)  # an index is not one image's manifest


def test_registry_configuration(tmp_path: Path) -> None:
    anonymous = registry_config(tmp_path / "storage", "127.0.0.1:5000")
    assert anonymous["http"] == {"addr": "127.0.0.1:5000"} and "auth" not in anonymous
    assert anonymous["storage"]["filesystem"]["rootdirectory"] == str(tmp_path / "storage")  # type: ignore[index]
    private = registry_config(tmp_path / "storage", "127.0.0.1:5000", htpasswd=tmp_path / "htpasswd")
    assert private["auth"]["htpasswd"]["path"] == str(tmp_path / "htpasswd")  # type: ignore[index]


def test_login_files() -> None:
    config = json.loads(docker_config("127.0.0.1:5000", "ci", "s3cret"))
    assert base64.b64decode(config["auths"]["127.0.0.1:5000"]["auth"]) == b"ci:s3cret"


def test_the_node_pulls_from_the_cluster_registry_only(tmp_path: Path) -> None:
    layout = node.NodeLayout(tmp_path / "node")
    assert f"config_path = '{layout.registry_hosts}'" in node.containerd_config(layout)
    assert hosts_toml("http://127.0.0.1:5000") == 'server = "http://127.0.0.1:5000"\n'  # no [host] mirror, no fall-back


# --- on the cluster -------------------------------------------------------------------------------


def pause_archive() -> Image:
    return next(image for image in build_images() if image.ref == PAUSE_IMAGE)


def start_pod(kube: Kube, namespace: str, name: str, image: str, **spec: Any) -> None:
    container = {"name": "main", "image": image, "imagePullPolicy": "IfNotPresent"}
    kube.core.create_namespaced_pod(
        namespace, {"metadata": {"name": name}, "spec": {"containers": [container], **spec}}
    )


def running(kube: Kube, namespace: str, name: str) -> Any:
    return watch_until(
        kube.core.list_namespaced_pod,
        lambda p: p.status.phase == "Running",
        timeout=90,
        namespace=namespace,
        field_selector=f"metadata.name={name}",
    )


def pull_events(kube: Kube, namespace: str, name: str) -> list[str]:
    events = kube.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return [e.message for e in events if e.reason in ("Pulled", "Failed")]


def test_the_node_pulls_by_tag_and_by_digest_with_image_gc_on(
    cluster: LocalCluster, kube: Kube, namespace: str
) -> None:
    if not cluster.local:
        pytest.skip("the local cluster's registry")
    assert cluster.registry is not None
    # A tag no pod has used yet, so the node has to pull it: under a docker.io name (the registry
    # serves docker.io, as every image the tests name) and by digest under the registry's own host.
    fresh = replace(pause_archive(), ref=f"docker.io/harness/idle:{uuid.uuid4().hex[:8]}")
    digest = cluster.registry.push(fresh)
    by_digest = f"{cluster.registry.host}/harness/idle@{digest}"
    start_pod(kube, namespace, "by-tag", fresh.ref)
    start_pod(kube, namespace, "by-digest", by_digest)
    for name, image in (("by-tag", fresh.ref), ("by-digest", by_digest)):
        pod = running(kube, namespace, name)
        assert pod.status.container_statuses[0].image_id.endswith(digest)
        assert any(f'Successfully pulled image "{image}"' in m for m in pull_events(kube, namespace, name))
    assert f"/v2/harness/idle/manifests/{digest}" in (cluster.directory / "logs" / "registry.log").read_text()
    # The storage is kept across starts: the next start's garbage collection reclaims what this added.
    urllib.request.urlopen(
        urllib.request.Request(f"{cluster.registry.url}/v2/harness/idle/manifests/{digest}", method="DELETE")
    )
    # Images are no longer pinned to the node: the kubelet collects unused ones, as everywhere.
    answer = kube.core.connect_get_node_proxy_with_path(cluster.node_name, "configz", _preload_content=False)
    configz = json.loads(answer.data)["kubeletconfig"]  # unparsed: the client would give a str of a dict
    assert (configz["imageGCHighThresholdPercent"], configz["imageGCLowThresholdPercent"]) == (85, 80)


@pytest.fixture
def private_registry(cluster: LocalCluster, tmp_path: Path) -> Iterator[Registry]:
    """A second registry that wants a login, which the node trusts (plain HTTP) but has no login for."""
    if not cluster.local or cluster.node is None:
        pytest.skip("starts a registry the local node pulls from")
    login = ("ci", secrets.token_urlsafe(12))
    registry = Registry(tmp_path / "private", registry_bin(), tmp_path / "private.log", login=login).start()
    cluster.node.trust_registry(registry.host, registry.url)
    try:
        yield registry
    finally:
        registry.stop()


def test_a_registry_that_requires_a_login_serves_pods_that_have_a_pull_secret(
    kube: Kube, namespace: str, private_registry: Registry
) -> None:
    image = f"{private_registry.host}/team/idle:1"
    private_registry.push(replace(pause_archive(), ref=image))
    start_pod(kube, namespace, "anonymous", image)
    refused = watch_until(
        kube.core.list_namespaced_pod,
        lambda p: any(
            (s.state.waiting and s.state.waiting.reason in ("ErrImagePull", "ImagePullBackOff"))
            for s in p.status.container_statuses or []
        ),
        timeout=60,
        namespace=namespace,
        field_selector="metadata.name=anonymous",
    )
    assert refused.status.phase == "Pending"
    failures = pull_events(kube, namespace, "anonymous")
    assert any(re.search(r"401|unauthorized|authoriz|credentials", m, re.IGNORECASE) for m in failures), failures

    config = private_registry.auth_file.read_text()
    secret = {
        "metadata": {"name": "pull"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config},
    }
    kube.core.create_namespaced_secret(namespace, secret)
    start_pod(kube, namespace, "with-secret", image, imagePullSecrets=[{"name": "pull"}])
    running(kube, namespace, "with-secret")
    assert any(f'Successfully pulled image "{image}"' in m for m in pull_events(kube, namespace, "with-secret"))
