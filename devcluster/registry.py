"""The cluster's registry: the CNCF distribution registry (hack/build-registry.sh) on the host's
loopback, plain HTTP. The images are pushed to it with skopeo from the build's archives, and the
node's containerd pulls every image from it, as any cluster pulls from its registry (the node's
containerd is a host process, so 127.0.0.1 is the host's). It also serves charts (`helm push`).

The cluster's registry keeps its storage in the cache across starts (`kept_storage()`), so an image
it already holds under its tag is not pushed again: skopeo's own reuse of blobs is keyed by the
registry's host:port, which is new at each start.

The configurations are pure functions; `Registry` runs one, optionally requiring htpasswd logins.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from devcluster.images.recipes import Image
from devcluster.images.targets import default_cache_dir
from devcluster.postgres import free_port
from devcluster.processes import ComponentError, ManagedProcess, wait_until_ready

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0
PUSH_TIMEOUT = 600  # seconds: skopeo compresses each layer on the way (lockgate's image: ~100 MB)
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",  # what skopeo pushes from a docker-archive
    "application/vnd.oci.image.manifest.v1+json",
)


def kept_storage() -> Path:
    """The cluster's registry storage, beside the image archives: kept from one start to the next."""
    return default_cache_dir().parent / "registry-storage"


def registry_config(storage: Path, address: str, htpasswd: Path | None = None) -> dict[str, object]:
    """distribution's configuration: filesystem storage under `storage`, deletes allowed (as a
    registry that garbage-collects), and htpasswd logins when `htpasswd` names a file."""
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "registry"}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": address},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "lockgate-devcluster", "path": str(htpasswd)}}
    return config


def repository(ref: str) -> str:
    """A ref's path inside its registry: `docker.io/library/lockgate:dev` -> `library/lockgate:dev`."""
    domain, _, path = ref.partition("/")
    if not path or not ("." in domain or ":" in domain or domain == "localhost"):
        raise ValueError(f"{ref!r} is not a fully qualified image reference (registry/path:tag)")
    return path


def name_and_tag(ref: str) -> tuple[str, str]:
    """`docker.io/library/lockgate:dev` -> (`library/lockgate`, `dev`)."""
    name, _, tag = repository(ref).rpartition(":")
    if not name or "/" in tag:
        raise ValueError(f"{ref!r} names no tag")
    return name, tag


def archive_config_digest(archive_manifest: str) -> str:
    """The image's config digest (its ID) from a docker-archive's manifest.json: the config file is
    named by its sha256 (`HEX.json`, or `blobs/sha256/HEX` in Docker 25's archives)."""
    (entry,) = json.loads(archive_manifest)
    return "sha256:" + Path(entry["Config"]).name.removesuffix(".json")


def holds(manifest: dict[str, object], config_digest: str) -> bool:
    """A registry manifest is of the image whose config is `config_digest`: the config names every
    layer by its uncompressed digest, so the same config is the same image, however it was compressed."""
    config = manifest.get("config")
    return isinstance(config, dict) and config.get("digest") == config_digest


def hosts_toml(server: str) -> str:
    """A containerd hosts.toml that sends every pull for one registry host to `server` and nowhere else
    (no fall-back to the internet: a missing image fails here, not at Docker Hub's rate limit)."""
    return f'server = "{server}"\n'


def docker_config(host: str, user: str, password: str) -> str:
    """The ~/.docker/config.json of one login: what skopeo reads and a kubernetes.io/dockerconfigjson Secret holds."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": auth}}})


def answers(url: str) -> bool:
    """An HTTP server answers at `url`, whatever the status (401 for a registry that wants a login)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


class Registry:
    """One registry process with its storage and configuration under `root`; stopped with `stop()`."""

    def __init__(
        self, root: Path, binary: Path, log: Path, login: tuple[str, str] | None = None, storage: Path | None = None
    ) -> None:
        self.root = root
        self.storage = storage or root / "storage"
        self.binary = binary
        self.log = log
        self.login = login
        self.host = ""
        self.process: ManagedProcess | None = None
        self.pushed: dict[str, str] = {}  # image ref -> manifest digest in this registry

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def auth_file(self) -> Path:
        """A docker config.json with this registry's login (`{}` without one)."""
        return self.root / "auth.json"

    def start(self) -> Registry:
        self.root.mkdir(parents=True, exist_ok=True)
        self.host = f"{LOOPBACK}:{free_port()}"
        htpasswd = self._write_logins() if self.login else None
        self.auth_file.write_text(docker_config(self.host, *self.login) if self.login else "{}")
        config = self.root / "config.yml"
        config.write_text(yaml.safe_dump(registry_config(self.storage, self.host, htpasswd)))
        # No OpenTelemetry collector here: without this it exports spans to localhost:4318 and logs each failure.
        env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
        if self.storage.exists():  # kept storage: drop the images no tag names any more (0.1 s)
            self._collect_garbage(config, env)
        argv = [str(self.binary), "serve", str(config)]
        self.process = ManagedProcess("registry", argv, self.log, env=env, die_with_parent=True).start()
        wait_until_ready(self.process, lambda: answers(f"{self.url}/v2/"), START_TIMEOUT)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def ref(self, image_ref: str) -> str:
        """Where an image named `image_ref` is in this registry: `127.0.0.1:PORT/library/lockgate:dev`."""
        return f"{self.host}/{repository(image_ref)}"

    def push_all(self, images: Sequence[Image]) -> None:
        """Two at a time: most of a push is compressing layers, one core each."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(self.push, images))

    def push(self, image: Image) -> str:
        """Push a built image's archive under `self.ref(image.ref)`, unless that tag already holds the
        image; returns its manifest digest."""
        if held := self._held(image):
            self.pushed[image.ref] = held
            return held
        digest_file = self.root / f"{image.archive.name}.digest"
        command = [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",  # plain HTTP on loopback
            f"--dest-authfile={self.auth_file}",
            f"--digestfile={digest_file}",
            f"docker-archive:{image.archive}",
            f"docker://{self.ref(image.ref)}",
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=PUSH_TIMEOUT)
        except FileNotFoundError:
            raise ComponentError("skopeo not found: apt-get install skopeo (make node-deps)") from None
        if result.returncode != 0:
            raise ComponentError(f"pushing {image.archive} to {self.ref(image.ref)} failed: {result.stderr.strip()}")
        self.pushed[image.ref] = digest_file.read_text().strip()
        return self.pushed[image.ref]

    def _held(self, image: Image) -> str | None:
        """The manifest digest under the image's tag when it is of the archive's image, else None."""
        name, tag = name_and_tag(image.ref)
        request = urllib.request.Request(
            f"{self.url}/v2/{name}/manifests/{tag}", headers={"Accept": ",".join(MANIFEST_TYPES)}
        )
        if self.login:
            request.add_header("Authorization", "Basic " + base64.b64encode(":".join(self.login).encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                manifest, digest = json.load(response), response.headers["Docker-Content-Digest"]
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise ComponentError(f"reading {self.ref(image.ref)}: HTTP {e.code}") from None
        with tarfile.open(image.archive) as archive:  # an uncompressed tar: its index is read by seeking
            member = archive.extractfile("manifest.json")
            assert member is not None, f"{image.archive} has no manifest.json"
            config_digest = archive_config_digest(member.read().decode())
        return str(digest) if holds(manifest, config_digest) else None

    def _collect_garbage(self, config: Path, env: dict[str, str]) -> None:
        command = [str(self.binary), "garbage-collect", "--delete-untagged", str(config)]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as log:
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=PUSH_TIMEOUT)
        if result.returncode != 0:
            raise ComponentError(f"registry garbage-collect on {self.storage} failed: see {self.log}")

    def _write_logins(self) -> Path:
        assert self.login is not None
        user, password = self.login
        # bcrypt, the only scheme distribution's htpasswd accepts; the password on stdin, not in argv.
        try:
            result = subprocess.run(
                ["htpasswd", "-B", "-i", "-n", user], input=password, capture_output=True, text=True, check=True
            )
        except FileNotFoundError:
            raise ComponentError("htpasswd not found: apt-get install apache2-utils (make node-deps)") from None
        path = self.root / "htpasswd"
        path.write_text(result.stdout)
        return path
