"""Self-contained kubeconfig files (certificates embedded), so one can be copied anywhere."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from devcluster.pki import CertKey

CONTEXT = "lockgate-test"


def kubeconfig(server: str, ca: Path, client: CertKey, user: str) -> dict:
    def data(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server, "certificate-authority-data": data(ca)}}],
        "users": [
            {"name": user, "user": {"client-certificate-data": data(client.cert), "client-key-data": data(client.key)}}
        ],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": user}}],
        "current-context": CONTEXT,
    }


def write_kubeconfig(path: Path, server: str, ca: Path, client: CertKey, user: str) -> Path:
    path.write_text(yaml.safe_dump(kubeconfig(server, ca, client, user), sort_keys=False))
    path.chmod(0o600)
    return path
