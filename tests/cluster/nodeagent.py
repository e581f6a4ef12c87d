"""The node agent: registers Ready Nodes and plays the kubelet for the pods bound to them.

Containers whose image is the project's own run for real, as local processes in a private
mount namespace (see sandbox.py); any other image is simulated: running at once, Ready
after a short delay, never exiting. Pod status is reported the way the kubelet reports it
(podstatus.py decides; this module only does the I/O). Run as

    python -m tests.cluster.nodeagent --kubeconfig K --state-dir D --serving-cert C --serving-key K --client-ca CA
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tests.cluster import podspec, podstatus
from tests.cluster.logserver import serve_logs
from tests.cluster.node import lease_manifest, micro_time, node_heartbeat, node_manifest, node_status
from tests.cluster.pki import CertKey
from tests.cluster.rest import MERGE_PATCH, ApiError, Rest
from tests.postgres import free_port

log = logging.getLogger("nodeagent")

SANDBOX = Path(__file__).with_name("sandbox.py")
# What the project's "image" is made of on this host: the checkout (editable install and venv)
# and the base Python the venv links to. Volumes never hide them (see sandbox.py).
RUNTIME_PATHS = sorted(
    {str(Path(p).resolve()) for p in (Path(__file__).resolve().parents[2], sys.prefix, sys.base_prefix)}
)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HEARTBEAT_SECONDS = 10.0
NODE_STATUS_EVERY = 6  # heartbeats; the Lease is what the node lifecycle controller watches
SHUTDOWN_GRACE = 2.0
RETRY_SECONDS = 1.0
LOG_TAIL_BYTES = 16384
DEFAULT_GRACE = 30


@dataclass(frozen=True)
class AgentConfig:
    kubeconfig: Path
    state_dir: Path
    nodes: tuple[str, ...]
    real_images: tuple[str, ...]
    entrypoint: tuple[str, ...]
    simulated_delay: float
    kubelet_port: int
    serving_cert: CertKey
    client_ca: Path


@dataclass(frozen=True)
class PodUpdate:
    pod: dict


@dataclass(frozen=True)
class Exited:
    container: str
    code: int


@dataclass(frozen=True)
class BecameReady:
    container: str


GONE, SHUTDOWN, RETRY = "gone", "shutdown", "retry"
Event = PodUpdate | Exited | BecameReady | str


def exit_code(returncode: int) -> int:
    """Killed by signal N -> 128+N, as container runtimes report it (137 for SIGKILL)."""
    return 128 - returncode if returncode < 0 else returncode


def _resource_version(obj: Mapping) -> int:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, ValueError):
        return 0


def _tail(path: Path, size: int) -> bytes:
    if not path.exists():
        return b""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - size))
        return f.read()


class PodWorker:
    """One pod's lifecycle, in its own thread, driven by events: API updates, process exits, timers."""

    def __init__(self, agent: Agent, pod: dict) -> None:
        self.agent = agent
        self.config = agent.config
        self.pod = pod
        meta, self.spec = pod["metadata"], pod["spec"]
        self.uid, self.namespace, self.name = meta["uid"], meta["namespace"], meta["name"]
        self.path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"
        self.dir = self.config.state_dir / "pods" / f"{self.namespace}_{self.name}_{self.uid}"
        self.init_names = {c["name"] for c in self.spec.get("initContainers") or []}
        self.containers = {c["name"]: c for c in [*(self.spec.get("initContainers") or []), *self.spec["containers"]]}
        self.init, self.main = podstatus.initial_states(self.spec)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.timers: list[tuple[float, Event]] = []
        self.volumes: dict[str, podspec.Volume] | None = None
        self.started_at = time.time()
        self.last_patch: dict | None = None
        self.events: queue.Queue[Event] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=f"pod {self.namespace}/{self.name}", daemon=True)

    def post(self, event: Event) -> None:
        self.events.put(event)

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("pod %s/%s: worker failed; stopping its processes", self.namespace, self.name)
            self._stop_processes(0)
        finally:
            self.agent.forget(self)

    def _loop(self) -> None:
        while True:
            if self.pod["metadata"].get("deletionTimestamp"):
                self._terminate_and_delete()
                return
            self._start_due()
            if (phase := self._report()) in ("Succeeded", "Failed"):
                log.info("pod %s/%s: %s", self.namespace, self.name, phase)
                return
            for event in self._next_events():
                if event in (GONE, SHUTDOWN):
                    self._stop_processes(0 if event == GONE else SHUTDOWN_GRACE)
                    return
                self._apply(event)

    def _next_events(self) -> list[Event]:
        wakeups = [t for t, _ in self.timers]
        if (retry := podstatus.next_wakeup([*self.init, *self.main])) is not None:
            wakeups.append(retry)
        timeout = max(0.0, min(wakeups) - time.time()) if wakeups else None
        try:
            events = [self.events.get(timeout=timeout)]
        except queue.Empty:
            events = []
        now = time.time()
        events += [e for t, e in self.timers if t <= now]
        self.timers = [(t, e) for t, e in self.timers if t > now]
        return events

    def _apply(self, event: Event) -> None:
        now = time.time()
        if isinstance(event, PodUpdate):
            if _resource_version(event.pod) >= _resource_version(self.pod):
                self.pod = event.pod
        elif isinstance(event, BecameReady):
            self._update(event.container, podstatus.became_ready)
        elif isinstance(event, Exited):
            self._on_exit(event, now)

    def _update(self, name: str, change: Callable[[podstatus.ContainerState], podstatus.ContainerState]) -> None:
        states = self.init if name in self.init_names else self.main
        states[:] = [change(c) if c.name == name else c for c in states]

    # --- starting containers -------------------------------------------------------------

    def _start_due(self) -> None:
        now = time.time()
        if self.volumes is None:
            try:
                self.volumes = self._prepare_volumes()
            except (podspec.ConfigError, ApiError, OSError) as e:
                message = f"MountVolume.SetUp failed: {e}"
                for name in self.containers:
                    self._update(name, lambda c: podstatus.config_error(c, message, now, "ContainerCreating"))
                return
        for name in podstatus.to_start(self.init, self.main, now):
            self._start(name, now)

    def _start(self, name: str, now: float) -> None:
        container = self.containers[name]
        if not podspec.runs_for_real(container["image"], self.config.real_images):
            self._update(name, lambda c: podstatus.started(c, now, ready=False))
            event: Event = Exited(name, 0) if name in self.init_names else BecameReady(name)
            self.timers.append((now + self.config.simulated_delay, event))
            return
        try:
            self.processes[name] = self._spawn(container)
        except (podspec.ConfigError, ApiError, OSError) as e:  # retried, as the kubelet retries
            reason = str(e)
            self._update(name, lambda c: podstatus.config_error(c, reason, now))
            return
        log.info("pod %s/%s: started %s (pid %d)", self.namespace, self.name, name, self.processes[name].pid)
        self._update(name, lambda c: podstatus.started(c, now, ready=True))  # no probes: running is ready

    def _lookup(self, kind: str, name: str) -> Mapping[str, bytes] | None:
        plural = {"Secret": "secrets", "ConfigMap": "configmaps"}[kind]
        try:
            return podspec.object_data(self.agent.rest.get(f"/api/v1/namespaces/{self.namespace}/{plural}/{name}"))
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def _token(self, audience: str, seconds: int) -> str:
        account = self.spec.get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": seconds,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid},
            },
        }
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token"
        return self.agent.rest.create(path, body)["status"]["token"]

    def _prepare_volumes(self) -> dict[str, podspec.Volume]:
        volumes = {}
        for volume in self.spec.get("volumes") or []:
            content = volumes[volume["name"]] = podspec.volume_content(self.pod, volume, self._lookup, self._token)
            target = self.dir / "volumes" / volume["name"]
            if isinstance(content, podspec.EmptyDir):
                target.mkdir(parents=True, exist_ok=True)
            elif isinstance(content, podspec.Files):
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                for relative, (data, mode) in content.entries.items():
                    file = target / relative
                    file.parent.mkdir(parents=True, exist_ok=True)
                    file.write_bytes(data)
                    file.chmod(mode)
        return volumes

    def _mount_source(self, mount: podspec.Mount) -> str:
        assert self.volumes is not None
        volume = self.volumes[mount.volume]
        base = volume.path if isinstance(volume, podspec.HostPath) else str(self.dir / "volumes" / mount.volume)
        if not mount.sub_path:
            return base
        source = os.path.join(base, mount.sub_path)
        if isinstance(volume, podspec.EmptyDir):
            os.makedirs(source, exist_ok=True)  # the kubelet creates a missing subPath
        return source

    def _image_env(self, home: Path) -> dict[str, str]:
        """What the image and the runtime provide before the pod's own env."""
        port = str(self.agent.api_port)
        return {
            "PATH": f"{Path(sys.executable).parent}:{SYSTEM_PATH}",  # `lockgate` and `python` from this venv
            "HOME": str(home),
            "HOSTNAME": self.name,
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://127.0.0.1:{port}",
        }

    def _spawn(self, container: dict) -> subprocess.Popen[bytes]:
        name = container["name"]
        work = self.dir / name
        (work / "home").mkdir(parents=True, exist_ok=True)
        env = podspec.container_env(self.pod, container, self._lookup, self._image_env(work / "home"))
        argv = podspec.container_argv(container, env, self.config.entrypoint)
        assert self.volumes is not None
        mounts = [
            {"source": self._mount_source(m), "target": m.path, "read_only": m.read_only}
            for m in podspec.container_mounts(container, self.volumes)
        ]
        message_file = work / "termination-log"
        message_file.write_bytes(b"")
        (work / "start-error").unlink(missing_ok=True)
        target = container.get("terminationMessagePath") or "/dev/termination-log"
        mounts.append({"source": str(message_file), "target": target, "read_only": False})
        sandbox = {
            "mounts": mounts,
            "runtime": RUNTIME_PATHS,
            "workdir": container.get("workingDir") or str(work / "cwd"),
            "argv": argv,
            "start_error": str(work / "start-error"),
        }
        (work / "sandbox.json").write_text(json.dumps(sandbox))
        command = [
            self.agent.unshare,
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            "-I",
            str(SANDBOX),
            str(work / "sandbox.json"),
        ]
        with open(self.dir / f"{name}.log", "ab") as out:
            process = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        threading.Thread(target=lambda: self.post(Exited(name, exit_code(process.wait()))), daemon=True).start()
        return process

    def _on_exit(self, event: Exited, now: float) -> None:
        self.processes.pop(event.container, None)
        work = self.dir / event.container
        start_error = work / "start-error"
        if start_error.exists():
            reason, message = "StartError", start_error.read_text()
        else:
            container = self.containers[event.container]
            reason, message = (
                "",
                podspec.termination_message(
                    _tail(work / "termination-log", podspec.MAX_MESSAGE),
                    container.get("terminationMessagePolicy", "File"),
                    event.code != 0,
                    _tail(self.dir / f"{event.container}.log", LOG_TAIL_BYTES),
                ),
            )
        log.info("pod %s/%s: %s exited %d", self.namespace, self.name, event.container, event.code)
        policy, init = self.spec.get("restartPolicy", "Always"), event.container in self.init_names
        self._update(event.container, lambda c: podstatus.exited(c, event.code, message, now, policy, init, reason))

    # --- reporting and stopping ----------------------------------------------------------

    def _report(self) -> str:
        """Patch pods/status when what we own changed; returns the phase."""
        now = time.time()
        patch = podstatus.status_patch(self.pod, self.init, self.main, self.started_at, now)
        if patch != self.last_patch:
            try:
                self.pod = self.agent.rest.patch(f"{self.path}/status", patch)
                self.last_patch = patch
            except ApiError as e:
                if e.status in (404, 409):  # gone, or replaced by a pod with the same name (uid precondition)
                    self.post(GONE)
                else:
                    log.warning("pod %s/%s: status patch failed, retrying: %s", self.namespace, self.name, e)
                    self.timers.append((now + RETRY_SECONDS, RETRY))
                return "Unknown"
        return patch["status"]["phase"]

    def _stop_processes(self, grace: float) -> None:
        """SIGTERM to every process group, SIGKILL to what is left after `grace` seconds."""
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def _terminate_and_delete(self) -> None:
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds", self.spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE))
        log.info("pod %s/%s: deleting (grace %ss)", self.namespace, self.name, grace)
        self._stop_processes(float(grace))
        self.agent.remove_pod(self.pod)


def _drain(events: queue.Queue[Event]) -> list[Event]:
    drained = []
    while True:
        try:
            drained.append(events.get_nowait())
        except queue.Empty:
            return drained


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.rest = Rest(config.kubeconfig)
        self.api_port = urlparse(self.rest.server).port or 443
        self.unshare = shutil.which("unshare") or "unshare"
        self.lock = threading.Lock()
        self.workers: dict[str, PodWorker] = {}
        self.seen: set[str] = set()  # a pod gets one worker, ever: a late event must not rerun a finished pod
        self.stopping = threading.Event()
        self.deleter = ThreadPoolExecutor(max_workers=4, thread_name_prefix="delete")

    def run(self) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        serve_logs(self.config.kubelet_port, self.config.serving_cert, self.config.client_ca, self.find_log)
        for node in self.config.nodes:
            self._register(node)
        log.info(
            "nodes %s registered; kubelet endpoint 127.0.0.1:%d", ", ".join(self.config.nodes), self.config.kubelet_port
        )
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        threading.Thread(target=self._watch_pods, name="watch", daemon=True).start()
        self.stopping.wait()
        self._shutdown()

    def find_log(self, namespace: str, pod: str, container: str) -> Path | None:
        logs = sorted(
            self.config.state_dir.glob(f"pods/{namespace}_{pod}_*/{container}.log"), key=lambda p: p.stat().st_mtime
        )
        return logs[-1] if logs else None

    # --- nodes ----------------------------------------------------------------------------

    def _register(self, node: str) -> None:
        try:
            created = self.rest.create("/api/v1/nodes", node_manifest(node))
        except ApiError as e:
            if e.status != 409:
                raise
            created = self.rest.get(f"/api/v1/nodes/{node}")
        self.rest.patch(f"/api/v1/nodes/{node}/status", node_status(self.config.kubelet_port, time.time()))
        self._renew_lease(node, created["metadata"]["uid"])

    def _renew_lease(self, node: str, node_uid: str = "") -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"
        now = time.time()
        try:
            self.rest.patch(path, {"spec": {"holderIdentity": node, "renewTime": micro_time(now)}}, MERGE_PATCH)
        except ApiError as e:
            if e.status != 404:
                raise
            node_uid = node_uid or self.rest.get(f"/api/v1/nodes/{node}")["metadata"]["uid"]
            self.rest.create(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease_manifest(node, node_uid, now)
            )

    def _heartbeat(self) -> None:
        beats = 0
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            beats += 1
            for node in self.config.nodes:
                try:
                    self._renew_lease(node)
                    if beats % NODE_STATUS_EVERY == 0:
                        self.rest.patch(f"/api/v1/nodes/{node}/status", node_heartbeat(time.time()))
                except Exception as e:  # the next beat tries again
                    log.warning("heartbeat for %s failed: %s", node, e)

    # --- pods -----------------------------------------------------------------------------

    def _watch_pods(self) -> None:
        """List, then watch from that version; relist when it expires (410). Never dies."""
        bound = {"fieldSelector": "spec.nodeName!="}
        version = None
        while not self.stopping.is_set():
            try:
                if version is None:
                    listing = self.rest.get("/api/v1/pods", bound)
                    version = listing["metadata"]["resourceVersion"]
                    self._resync(listing["items"])
                for event in self.rest.watch(
                    "/api/v1/pods", {**bound, "resourceVersion": version, "timeoutSeconds": "300"}
                ):
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._dispatch(event["type"], event["object"])
            except ApiError as e:
                if e.status == 410:
                    version = None
                    continue
                log.warning("pod watch failed: %s", e)
                time.sleep(RETRY_SECONDS)
            except Exception:
                log.exception("pod watch failed")
                time.sleep(RETRY_SECONDS)

    def _resync(self, pods: list[dict]) -> None:
        current = {p["metadata"]["uid"] for p in pods}
        for pod in pods:
            self._dispatch("MODIFIED", pod)
        with self.lock:
            for uid, worker in self.workers.items():
                if uid not in current:
                    worker.post(GONE)

    def _dispatch(self, kind: str, pod: dict) -> None:
        if pod["spec"].get("nodeName") not in self.config.nodes:
            return
        uid = pod["metadata"]["uid"]
        with self.lock:
            if worker := self.workers.get(uid):
                worker.post(GONE if kind == "DELETED" else PodUpdate(pod))
            elif kind == "DELETED":
                pass
            elif pod["metadata"].get("deletionTimestamp"):
                self.deleter.submit(self.remove_pod, pod)  # nothing runs for it any more
            elif uid not in self.seen and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
                self.seen.add(uid)
                worker = self.workers[uid] = PodWorker(self, pod)
                worker.thread.start()

    def forget(self, worker: PodWorker) -> None:
        with self.lock:
            self.workers.pop(worker.uid, None)
            leftovers = _drain(worker.events)
        # A deletion that raced with the worker's end still needs the final delete.
        updates = [e.pod for e in leftovers if isinstance(e, PodUpdate)]
        if updates and updates[-1]["metadata"].get("deletionTimestamp") and not self.stopping.is_set():
            self.deleter.submit(self.remove_pod, updates[-1])

    def remove_pod(self, pod: dict) -> None:
        """The kubelet's last word: delete with grace 0 once nothing runs any more."""
        meta = pod["metadata"]
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        try:
            self.rest.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body)
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("deleting pod %s/%s failed: %s", meta["namespace"], meta["name"], e)

    def _shutdown(self) -> None:
        with self.lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.post(SHUTDOWN)
        for worker in workers:
            worker.thread.join(SHUTDOWN_GRACE + 5)
        self.deleter.shutdown(wait=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.nodeagent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True, help="pod volumes, logs and scratch space")
    parser.add_argument("--node", action="append", help="node name (repeatable; default lockgate-node-1)")
    parser.add_argument(
        "--real-image",
        action="append",
        help="glob matched against image repository or reference (repeatable); "
        f"default {' '.join(podspec.DEFAULT_REAL_IMAGES)}",
    )
    parser.add_argument(
        "--entrypoint", default="lockgate", help="the real image's ENTRYPOINT, used when a container has no command"
    )
    parser.add_argument(
        "--simulated-delay", type=float, default=0.5, help="seconds before a simulated container is Ready"
    )
    parser.add_argument(
        "--kubelet-port", type=int, default=0, help="port of the pods/log endpoint (default: a free one)"
    )
    parser.add_argument("--serving-cert", type=Path, required=True)
    parser.add_argument("--serving-key", type=Path, required=True)
    parser.add_argument(
        "--client-ca", type=Path, required=True, help="CA of the API server's kubelet client certificate"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [%(threadName)s] %(message)s")
    agent = Agent(
        AgentConfig(
            kubeconfig=args.kubeconfig,
            state_dir=args.state_dir,
            nodes=tuple(args.node or ["lockgate-node-1"]),
            real_images=tuple(args.real_image or podspec.DEFAULT_REAL_IMAGES),
            entrypoint=tuple(shlex.split(args.entrypoint)),
            simulated_delay=args.simulated_delay,
            kubelet_port=args.kubelet_port or free_port(),
            serving_cert=CertKey(args.serving_cert, args.serving_key),
            client_ca=args.client_ca,
        )
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: agent.stopping.set())
    agent.run()


if __name__ == "__main__":
    main()
