"""A small JSON client for the Kubernetes API, for the node agent: plain dicts in and out,
explicit patch types, and watches that report 410 Gone so the caller can relist."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlencode

import urllib3
from kubernetes import client, config

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
REQUEST_TIMEOUT = 30.0


class ApiError(Exception):
    """An error answer from the API server; status 0 when there was no answer at all."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:500]}")
        self.status = status


class Rest:
    def __init__(self, kubeconfig: Path) -> None:
        configuration = client.Configuration()
        config.load_kube_config(str(kubeconfig), client_configuration=configuration)
        self.server = configuration.host
        self._headers = {"Accept": JSON}
        if token := configuration.api_key.get("authorization"):
            self._headers["Authorization"] = token
        self._http = urllib3.PoolManager(
            maxsize=32,
            cert_reqs="CERT_REQUIRED",
            ca_certs=configuration.ssl_ca_cert,
            cert_file=configuration.cert_file,
            key_file=configuration.key_file,
        )

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        params: Mapping[str, str] | None = None,
        content_type: str = JSON,
    ) -> dict:
        try:
            response = self._http.request(
                method,
                self._url(path, params),
                body=None if body is None else json.dumps(body).encode(),
                headers={**self._headers, "Content-Type": content_type},
                timeout=REQUEST_TIMEOUT,
            )
        except urllib3.exceptions.HTTPError as e:
            raise ApiError(0, f"no answer from {self.server}: {e}") from e
        if response.status >= 400:
            raise ApiError(response.status, response.data.decode(errors="replace"))
        return json.loads(response.data) if response.data else {}

    def get(self, path: str, params: Mapping[str, str] | None = None) -> dict:
        return self.request("GET", path, params=params)

    def create(self, path: str, body: object) -> dict:
        return self.request("POST", path, body)

    def patch(self, path: str, body: object, content_type: str = STRATEGIC_PATCH) -> dict:
        return self.request("PATCH", path, body, content_type=content_type)

    def delete(self, path: str, body: object = None) -> dict:
        return self.request("DELETE", path, body)

    def watch(self, path: str, params: Mapping[str, str]) -> Iterator[dict]:
        """Events of one watch request until the server ends it; ApiError(410) when the version expired."""
        query = {**params, "watch": "true", "allowWatchBookmarks": "true"}
        timeout = urllib3.Timeout(
            connect=REQUEST_TIMEOUT, read=float(params.get("timeoutSeconds", 300)) + REQUEST_TIMEOUT
        )
        response = self._http.request(
            "GET", self._url(path, query), headers=self._headers, preload_content=False, timeout=timeout
        )
        try:
            if response.status >= 400:
                raise ApiError(response.status, response.read().decode(errors="replace"))
            for line in response:
                event = json.loads(line)
                if event["type"] == "ERROR":
                    raise ApiError(event["object"].get("code", 500), json.dumps(event["object"]))
                yield event
        finally:
            response.release_conn()

    def _url(self, path: str, params: Mapping[str, str] | None) -> str:
        return f"{self.server}{path}" + (f"?{urlencode(params)}" if params else "")
