"""The part of the kubelet's HTTPS API that `kubectl logs` and pods/log reach through the API
server: GET /containerLogs/{namespace}/{pod}/{container}, served from the node agent's log files.
Only clients with a certificate from the cluster CA (the API server) are served."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from tests.cluster.pki import CertKey

# (namespace, pod, container) -> the log file, or None
LogFinder = Callable[[str, str, str], "Path | None"]


def select_log(content: bytes, tail_lines: int | None, limit_bytes: int | None) -> bytes:
    if tail_lines is not None:
        lines = content.splitlines(keepends=True)
        content = b"".join(lines[-tail_lines:]) if tail_lines else b""
    return content[:limit_bytes] if limit_bytes is not None else content


def _int(query: dict[str, list[str]], name: str) -> int | None:
    return int(query[name][0]) if name in query else None


def serve_logs(port: int, server_cert: CertKey, ca: Path, find: LogFinder) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            path = find(*parts[1:]) if len(parts) == 4 and parts[0] == "containerLogs" else None
            if path is None:
                self.send_error(404, "container log not found")
                return
            query = parse_qs(url.query)
            body = select_log(path.read_bytes(), _int(query, "tailLines"), _int(query, "limitBytes"))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the agent's own log says what matters

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(server_cert.cert), str(server_cert.key))
    context.load_verify_locations(str(ca))
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="logserver", daemon=True).start()
    return server
