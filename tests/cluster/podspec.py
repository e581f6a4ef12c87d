"""What the node agent runs for a container, decided from the pod as the API returns it
(plain JSON dicts): real or simulated, the process environment and argv, and the files of
each volume. Pure functions: API objects come in through a `Lookup`."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

# The project's own image: any repository whose last path component is `lockgate`.
DEFAULT_REAL_IMAGES = ("lockgate", "*/lockgate")
DEFAULT_MODE = 0o644
SERVICE_ACCOUNT_TOKEN_SECONDS = 3607  # what the ServiceAccount admission plugin asks for


class ConfigError(Exception):
    """The container cannot start (yet): a referenced object or key is missing, or a field is unsupported."""


# (kind, name) -> the object's data decoded to bytes, or None when it does not exist.
Lookup = Callable[[str, str], "Mapping[str, bytes] | None"]
# (audience or "", expirationSeconds) -> a token bound to the pod.
TokenRequest = Callable[[str, int], str]


def image_repository(image: str) -> str:
    """`ghcr.io/lockgate/lockgate:0.1@sha256:...` -> `ghcr.io/lockgate/lockgate`."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > last_slash else name


def runs_for_real(image: str, patterns: Sequence[str]) -> bool:
    repository = image_repository(image)
    return any(fnmatchcase(repository, p) or fnmatchcase(image, p) for p in patterns)


def object_data(obj: Mapping) -> dict[str, bytes]:
    """A Secret's or ConfigMap's keys as bytes."""
    if obj.get("kind") == "Secret":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known variables substituted, `$$` escapes, unknown ones kept."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


_LABELS = re.compile(r"metadata\.(labels|annotations)\['(.+)'\]")


def field_value(pod: Mapping, path: str) -> str:
    """A downward-API fieldRef: the fields the kubelet supports."""
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    if match := _LABELS.fullmatch(path):
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.podIPs": ",".join(ip["ip"] for ip in status.get("podIPs") or []),
        "status.hostIPs": ",".join(ip["ip"] for ip in status.get("hostIPs") or []),
    }
    if path in simple:
        return simple[path] or ""
    if path in ("metadata.labels", "metadata.annotations"):
        entries = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(entries.items()))
    raise ConfigError(f"unsupported fieldRef {path!r}")


def _referenced(lookup: Lookup, kind: str, name: str, optional: bool) -> Mapping[str, bytes] | None:
    data = lookup(kind, name)
    if data is None and not optional:
        raise ConfigError(f'{kind.lower()} "{name}" not found')
    return data


def _key_ref(pod: Mapping, source: Mapping, lookup: Lookup) -> str | None:
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"])
    for ref_name, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
        if ref := source.get(ref_name):
            optional = bool(ref.get("optional"))
            data = _referenced(lookup, kind, ref["name"], optional)
            if data is None:
                return None
            if ref["key"] not in data:
                if optional:
                    return None
                raise ConfigError(
                    f"couldn't find key {ref['key']} in {kind} {pod['metadata']['namespace']}/{ref['name']}"
                )
            return data[ref["key"]].decode()
    raise ConfigError(f"unsupported valueFrom {sorted(source)}")


def container_env(pod: Mapping, container: Mapping, lookup: Lookup, base: Mapping[str, str]) -> dict[str, str]:
    """The process environment: `base` (the image's), then envFrom, then env, in order, as the kubelet builds it."""
    env = dict(base)
    for source in container.get("envFrom") or []:
        kind, ref = ("Secret", source["secretRef"]) if "secretRef" in source else ("ConfigMap", source["configMapRef"])
        data = _referenced(lookup, kind, ref["name"], bool(ref.get("optional"))) or {}
        env.update({source.get("prefix", "") + k: v.decode() for k, v in data.items()})
    for var in container.get("env") or []:
        if "valueFrom" in var:
            value = _key_ref(pod, var["valueFrom"], lookup)
            if value is not None:
                env[var["name"]] = value
        else:
            env[var["name"]] = expand(var.get("value", ""), env)
    return env


def container_argv(container: Mapping, env: Mapping[str, str], entrypoint: Sequence[str]) -> list[str]:
    """command replaces the image's ENTRYPOINT (`entrypoint`; the image has no CMD); args follow; $(VAR) expanded."""
    command = container.get("command") or list(entrypoint)
    argv = [expand(part, env) for part in [*command, *(container.get("args") or [])]]
    if not argv:
        raise ConfigError("no command specified")
    return argv


@dataclass(frozen=True)
class Files:
    """A volume made of files (configMap, secret, projected, downwardAPI): relative path -> (content, mode)."""

    entries: dict[str, tuple[bytes, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class EmptyDir:
    pass


@dataclass(frozen=True)
class HostPath:
    path: str


Volume = Files | EmptyDir | HostPath


def _project(
    data: Mapping[str, bytes], items: Sequence[Mapping] | None, mode: int, what: str
) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {key: (value, mode) for key, value in data.items()}
    missing = [item["key"] for item in items if item["key"] not in data]
    if missing:
        raise ConfigError(f"{what}: keys {missing} not found")
    return {item["path"]: (data[item["key"]], item.get("mode", mode)) for item in items}


def _object_files(source: Mapping, kind: str, name: str, lookup: Lookup, mode: int) -> dict[str, tuple[bytes, int]]:
    data = _referenced(lookup, kind, name, bool(source.get("optional")))
    if data is None:
        return {}
    return _project(data, source.get("items"), source.get("defaultMode", mode), f"{kind.lower()} {name}")


def _downward_files(pod: Mapping, items: Sequence[Mapping], mode: int) -> dict[str, tuple[bytes, int]]:
    files = {}
    for item in items:
        if "fieldRef" not in item:
            raise ConfigError(f"downwardAPI item {item['path']}: only fieldRef is supported")
        files[item["path"]] = (field_value(pod, item["fieldRef"]["fieldPath"]).encode(), item.get("mode", mode))
    return files


def _projected_files(
    pod: Mapping, projected: Mapping, lookup: Lookup, token: TokenRequest
) -> dict[str, tuple[bytes, int]]:
    mode = projected.get("defaultMode", DEFAULT_MODE)
    files: dict[str, tuple[bytes, int]] = {}
    for source in projected.get("sources") or []:
        if sa := source.get("serviceAccountToken"):
            value = token(sa.get("audience", ""), sa.get("expirationSeconds", SERVICE_ACCOUNT_TOKEN_SECONDS))
            files[sa["path"]] = (value.encode(), mode)
        elif cm := source.get("configMap"):
            files.update(_object_files(cm, "ConfigMap", cm["name"], lookup, mode))
        elif secret := source.get("secret"):
            files.update(_object_files(secret, "Secret", secret["name"], lookup, mode))
        elif downward := source.get("downwardAPI"):
            files.update(_downward_files(pod, downward.get("items") or [], mode))
        else:
            raise ConfigError(f"unsupported projected source {sorted(source)}")
    return files


def volume_content(pod: Mapping, volume: Mapping, lookup: Lookup, token: TokenRequest) -> Volume:
    if "emptyDir" in volume:
        return EmptyDir()
    if "hostPath" in volume:
        return HostPath(volume["hostPath"]["path"])
    if cm := volume.get("configMap"):
        return Files(_object_files(cm, "ConfigMap", cm["name"], lookup, DEFAULT_MODE))
    if secret := volume.get("secret"):
        return Files(_object_files(secret, "Secret", secret["secretName"], lookup, DEFAULT_MODE))
    if projected := volume.get("projected"):
        return Files(_projected_files(pod, projected, lookup, token))
    if downward := volume.get("downwardAPI"):
        return Files(_downward_files(pod, downward.get("items") or [], downward.get("defaultMode", DEFAULT_MODE)))
    kinds = sorted(k for k in volume if k != "name")
    raise ConfigError(f"volume {volume['name']}: unsupported volume type {kinds} on the lockgate test node")


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    sub_path: str
    read_only: bool


def container_mounts(container: Mapping, volumes: Mapping[str, Volume]) -> list[Mount]:
    """Volume mounts; file-made volumes are read-only whatever the pod says, as the kubelet mounts them."""
    mounts = []
    for m in container.get("volumeMounts") or []:
        if m["name"] not in volumes:
            raise ConfigError(f"volumeMount {m['mountPath']}: no volume named {m['name']}")
        read_only = bool(m.get("readOnly")) or isinstance(volumes[m["name"]], Files)
        mounts.append(Mount(m["name"], m["mountPath"], m.get("subPath", ""), read_only))
    return mounts


MAX_MESSAGE = 4096
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048


def termination_message(message_file: bytes, policy: str, failed: bool, log: bytes) -> str:
    """What the kubelet reports as terminated.message: the file (at most 4096 bytes), or with
    FallbackToLogsOnError and a failed, silent container, the end of its log."""
    if message_file or policy != "FallbackToLogsOnError" or not failed:
        return message_file[:MAX_MESSAGE].decode(errors="replace")
    tail = b"\n".join(log.splitlines()[-FALLBACK_LINES:])
    return tail[-FALLBACK_BYTES:].decode(errors="replace")
