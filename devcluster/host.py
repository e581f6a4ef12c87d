"""What a real node changes on the host, recorded before it starts and put back after it stops.

The kubelet, kube-proxy, containerd and the CNI plugins change host-wide state: kernel
tunables, iptables chains and nftables tables, a bridge and veth links, cgroups, mounts, a few
well-known directories. `snapshot()` records all of it before `up`; `restore()` puts the host
back after `down`, also after a crash (the snapshot is a file), by undoing only what is new.
The decisions (what to delete, what to write back) are pure functions of two snapshots.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Set by the kubelet (setupKernelTunables), kube-proxy (route_localnet, bridge-nf-call, conntrack)
# and the bridge CNI plugin (ip_forward): each is written back to the value it had before.
SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv6/conf/all/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
)
# Host directories the node's components create whatever their configuration says.
WATCHED_PATHS = (
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/var/lib/containerd",
    "/run/containerd",
    "/run/netns",
    "/run/nri",
    "/opt/containerd",
    "/etc/cni",
)
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle", "raw")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# The kubelet's pod cgroups (cgroupfs driver). Only these are the node's: a cgroup someone else
# creates meanwhile (a buildah build step, say) is not ours to kill or remove.
NODE_CGROUPS = ("kubepods",)
PROC_SYS = Path("/proc/sys")


@dataclass
class HostState:
    sysctls: dict[str, str] = field(default_factory=dict)
    iptables: dict[str, str] = field(default_factory=dict)  # "iptables nat" -> iptables-save output
    nft_tables: list[str] = field(default_factory=list)  # "ip filter", "inet kube-proxy", ...
    links: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)  # top-level directories of each cgroup hierarchy
    paths: list[str] = field(default_factory=list)  # the WATCHED_PATHS that exist, and their entries
    node_dir: str = ""  # where the node that will change all this keeps its state

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> HostState:
        return cls(**json.loads(text))


# ---- pure decisions ---------------------------------------------------------------------------


def iptables_undo(before: str, after: str) -> list[str]:
    """iptables-restore --noflush lines that remove the rules and chains `after` has and `before` had not.

    Rules in built-in chains that jump anywhere new go first (a chain still referenced cannot
    be deleted), then the new chains are flushed, then deleted."""
    old_rules, old_chains = _parse_save(before)
    new_rules, new_chains = _parse_save(after)
    added_chains = [c for c in new_chains if c not in old_chains]
    deletions = ["-D" + rule[2:] for rule in new_rules if rule not in old_rules and _chain_of(rule) in old_chains]
    return deletions + [f"-F {c}" for c in added_chains] + [f"-X {c}" for c in added_chains]


def _parse_save(text: str) -> tuple[list[str], list[str]]:
    rules = [line for line in text.splitlines() if line.startswith("-A ")]
    chains = [line[1:].split()[0] for line in text.splitlines() if line.startswith(":")]
    return rules, chains


def _chain_of(rule: str) -> str:
    return rule.split()[1]


def sysctl_writes(before: dict[str, str], now: dict[str, str]) -> dict[str, str]:
    """The tunables to write back: those that changed and still exist."""
    return {key: value for key, value in before.items() if key in now and now[key] != value}


def new_entries(before: Iterable[str], now: Iterable[str]) -> list[str]:
    """What exists now and did not before, deepest first (so children go before their parents)."""
    old = set(before)
    return sorted((entry for entry in now if entry not in old), key=lambda e: (-e.count("/"), e))


def names_path_inside(argv: Sequence[str], directories: Iterable[str]) -> bool:
    """Whether a command line names a path inside one of `directories`, as an argument or an option's value."""
    prefixes = tuple(d.rstrip("/") + "/" for d in directories)
    return any(arg.startswith(prefixes) or arg.split("=", 1)[-1].startswith(prefixes) for arg in argv)


def mounts_under(mountinfo: str, directory: Path) -> list[str]:
    """Mount points below `directory`, deepest first."""
    prefix = str(directory).rstrip("/") + "/"
    points = {_unescape(line.split()[4]) for line in mountinfo.splitlines() if len(line.split()) > 4}
    return sorted((p for p in points if p.startswith(prefix)), key=lambda p: (-p.count("/"), p))


def _unescape(mount_point: str) -> str:
    return mount_point.encode().decode("unicode_escape")  # mountinfo writes spaces as \040


# ---- the I/O shell ----------------------------------------------------------------------------


def snapshot() -> HostState:
    return HostState(
        sysctls=_read_sysctls(),
        iptables=_iptables_saves(),
        nft_tables=_nft_tables(),
        links=_links(),
        cgroups=_cgroup_dirs(),
        paths=_watched_paths(),
    )


def restore(before: HostState, node_dir: Path) -> list[str]:
    """Undo what the node left: returns one line per change made, for the log."""
    done: list[str] = []
    done += _kill_node_processes(before, node_dir)
    done += _unmount_under(node_dir)
    done += _delete_links(before)
    done += _undo_iptables(before)
    done += _delete_nft_tables(before)
    done += _remove_cgroups(before)
    done += _remove_paths(before)
    done += _write_sysctls(before)
    return done


def differences(before: HostState, after: HostState) -> dict[str, tuple[object, object]]:
    """What differs between two snapshots (empty when the host is as it was)."""
    mine, theirs = asdict(before), asdict(after)
    return {key: (mine[key], theirs[key]) for key in mine if key != "node_dir" and mine[key] != theirs[key]}


def _run(argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)


def _read_sysctls() -> dict[str, str]:
    values = {}
    for key in SYSCTLS:
        try:
            values[key] = (PROC_SYS / key).read_text().strip()
        except OSError:
            pass  # a module not loaded here (br_netfilter, nf_conntrack): nothing to restore
    return values


def _write_sysctls(before: HostState) -> list[str]:
    done = []
    for key, value in sysctl_writes(before.sysctls, _read_sysctls()).items():
        (PROC_SYS / key).write_text(value)
        done.append(f"sysctl {key.replace('/', '.')}={value}")
    return done


def _iptables_saves() -> dict[str, str]:
    saves = {}
    for tool in IPTABLES:
        if shutil.which(f"{tool}-save"):
            for table in TABLES:
                output = _run([f"{tool}-save", "-t", table]).stdout
                # Without the "# Generated ... on <time>" comments, so two snapshots compare equal.
                saves[f"{tool} {table}"] = "".join(line for line in output.splitlines(True) if not line.startswith("#"))
    return saves


def _undo_iptables(before: HostState) -> list[str]:
    done = []
    for key, after in _iptables_saves().items():
        tool, table = key.split()
        lines = iptables_undo(before.iptables.get(key, ""), after)
        if lines:
            script = "\n".join([f"*{table}", *lines, "COMMIT", ""])
            result = _run([f"{tool}-restore", "--noflush"], stdin=script)
            done.append(
                f"{tool} -t {table}: {len(lines)} changes undone"
                + (f" ({result.stderr.strip()})" if result.returncode else "")
            )
    return done


def _nft_tables() -> list[str]:
    if not shutil.which("nft"):
        return []
    lines = _run(["nft", "list", "tables"]).stdout.splitlines()
    return sorted(line.removeprefix("table ").strip() for line in lines if line.startswith("table "))


def _delete_nft_tables(before: HostState) -> list[str]:
    done = []
    for table in new_entries(before.nft_tables, _nft_tables()):
        _run(["nft", "delete", "table", *table.split()])
        done.append(f"nft table {table} deleted")
    return done


def _links() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir())


def _delete_links(before: HostState) -> list[str]:
    done = []
    for link in new_entries(before.links, _links()):
        if _run(["ip", "link", "delete", link]).returncode == 0:
            done.append(f"link {link} deleted")
    return done


def _cgroup_dirs() -> list[str]:
    if not CGROUP_ROOT.is_dir():
        return []
    found = []
    for hierarchy in sorted(CGROUP_ROOT.iterdir()):
        if hierarchy.is_dir() and not hierarchy.is_symlink():
            found += [str(d) for d in sorted(hierarchy.iterdir()) if d.is_dir()]
    return found


def _cgroup_tree(top: Path) -> list[Path]:
    """Every cgroup below and including `top`, deepest first."""
    return sorted((Path(d) for d, _, _ in os.walk(top)), key=lambda d: -len(d.parts))


def _node_cgroups(before: HostState) -> list[str]:
    return [top for top in new_entries(before.cgroups, _cgroup_dirs()) if Path(top).name in NODE_CGROUPS]


def _remove_cgroups(before: HostState) -> list[str]:
    done = []
    for top in _node_cgroups(before):
        for group in _cgroup_tree(Path(top)):
            try:
                group.rmdir()
            except OSError as exc:
                done.append(f"cgroup {group} left: {exc.strerror}")
        done.append(f"cgroup {top} removed")
    return done


def _kill_node_processes(before: HostState, node_dir: Path) -> list[str]:
    """SIGKILL what outlives the node's daemons: the processes started with paths inside the node's
    directory, containerd's shims above all (reparented to init by design; started with `-address`
    the node's containerd socket), and container processes (everything in the pod cgroups the node
    created). Not by executable: /proc/PID/exe is the resolved path, the binaries' directory may
    have been reached through a symlink, and a shim runs from where containerd found it."""
    pids = set(_pids_naming(node_dir))
    for top in _node_cgroups(before):
        for group in _cgroup_tree(Path(top)):
            pids |= set(_cgroup_pids(group))
    pids.discard(os.getpid())
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _wait_gone(pids)
    return [f"{len(pids)} leftover processes killed"] if pids else []


def _pids_naming(directory: Path) -> list[int]:
    directories = {str(directory), str(directory.resolve())}  # as configured, and as the kernel resolves it
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue  # gone meanwhile
            if names_path_inside(argv, directories):
                found.append(int(proc.name))
    return found


def _cgroup_pids(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _wait_gone(pids: Iterable[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    remaining = set(pids)
    while remaining and time.monotonic() < deadline:
        remaining = {p for p in remaining if Path(f"/proc/{p}").exists() and not _is_zombie(p)}
        time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def _unmount_under(directory: Path) -> list[str]:
    done = []
    for point in mounts_under(Path("/proc/self/mountinfo").read_text(), directory.resolve()):
        if _run(["umount", point]).returncode != 0:
            _run(["umount", "--lazy", point])  # still busy: detach it now, the kernel frees it when unused
        done.append(f"unmounted {point}")
    return done


def _watched_paths() -> list[str]:
    found = []
    for path in map(Path, WATCHED_PATHS):
        if path.exists():
            found.append(str(path))
            found += [str(entry) for entry in sorted(path.iterdir())] if path.is_dir() else []
    return found


def _remove_paths(before: HostState) -> list[str]:
    done = []
    for entry in new_entries(before.paths, _watched_paths()):
        path = Path(entry)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        done.append(f"removed {entry}")
    return done
