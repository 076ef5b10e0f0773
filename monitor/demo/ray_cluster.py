"""A real Ray cluster on loopback for the tests and benches (nothing in driftd itself starts Ray): a
head, and optionally more "nodes" joining it, each started with `ray start --block` on free ports in a
private temp dir and in its own process group, ended by that group's id and its processes' ids
(SIGTERM, then SIGKILL). Never `ray stop`: it stops every Ray on the machine.

Loopback only, by default. Ray 2.60 turns a node IP of 127.0.0.1 into the machine's outward address
(ray._private.services.resolve_ip_for_localhost), and its gRPC servers (GCS, raylet, object manager,
core workers) then listen on every interface; they listen on 127.0.0.1 only when the node IP stays
127.0.0.1, which Ray does when its multi-node switch is off (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0,
ray_constants.ENABLE_RAY_CLUSTER; despite its name it is read on Linux too). The switch applies to
every Ray process here: the head, and the drivers, which otherwise resolve 127.0.0.1 to the outward
address too and find no GCS there. Its price: no node can join (`ray start --address` refuses), so a
cluster with a second node (`loopback_only=False`) listens on all interfaces, as Ray does."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
SINGLE_NODE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1 as the node IP and listens there only


def _free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _free_range(width: int) -> int:
    """The first of `width` consecutive ports that were free a moment ago (for Ray's worker ports)."""
    for _ in range(50):
        first = _free_ports(1)[0]
        if first + width >= 65535:
            continue
        try:
            with contextlib.ExitStack() as stack:
                for port in range(first, first + width):
                    s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError(f"found no {width} consecutive free ports")


@dataclass
class RayCluster:
    temp_dir: Path
    address: str = ""  # host:port of the head's GCS
    client_port: int = 0  # ray://127.0.0.1:<client_port>
    processes: list[subprocess.Popen] = field(default_factory=list)
    node_ids: list[str] = field(default_factory=list)  # in the order the nodes joined
    loopback_only: bool = True  # every socket on 127.0.0.1; then no second node (see the module's docstring)

    def head_node_id(self) -> str:
        return self.node_ids[0]

    def start_node(self, *, num_cpus: int, head: bool = False, port: int | None = None, timeout: float = 90) -> subprocess.Popen:
        """A head (on `port`, e.g. to restart a head where it was) or a node joining the head."""
        if not head and self.loopback_only:
            raise ValueError("a loopback-only Ray cluster takes no second node (Ray 2.60 refuses it with its multi-node "
                             "switch off); use ray_cluster(loopback_only=False), which listens on all interfaces")
        gcs, node_manager, object_manager, client, agent_grpc, agent_http, metrics, runtime_env, autoscaler = _free_ports(9)
        workers = _free_range(40)
        args = [RAY, "start", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}", "--num-gpus=0",
                f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
                f"--min-worker-port={workers}", f"--max-worker-port={workers + 39}",
                f"--dashboard-agent-grpc-port={agent_grpc}", f"--dashboard-agent-listen-port={agent_http}",
                f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
                "--object-store-memory=200000000", "--disable-usage-stats"]
        gcs = port or gcs
        if head:
            self.address, self.client_port = f"127.0.0.1:{gcs}", client
            args += ["--head", f"--port={gcs}", f"--ray-client-server-port={client}", "--include-dashboard=false",
                     f"--temp-dir={self.temp_dir}"]
        else:
            args += [f"--address={self.address}"]
        # The head's autoscaler monitor serves its metrics on a fixed port (44217) unless told: two clusters would collide.
        env = {**self._env(), "AUTOSCALER_METRIC_PORT": str(autoscaler)}
        log = open(self.temp_dir / f"start-{len(self.processes)}.log", "wb")  # noqa: SIM115 - kept open for the process's life
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.processes.append(process)
        self._wait_nodes(len(self.processes), timeout)
        return process

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        env.pop(SINGLE_NODE, None)
        if self.loopback_only:
            env[SINGLE_NODE] = "0"
        return env

    def _wait_nodes(self, count: int, timeout: float) -> None:
        """Poll the GCS until `count` nodes are alive (through a short-lived driver)."""
        probe = ("import json, ray, sys; ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR');"
                 "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))")
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"ray start exited with {process.returncode}; see {self.temp_dir}/start-*.log")
            try:
                done = subprocess.run([sys.executable, "-c", probe, self.address], capture_output=True, text=True, timeout=60,
                                      env=self._env())
            except subprocess.TimeoutExpired:
                continue
            last = done.stdout.strip() or done.stderr.strip()[-300:]
            if done.returncode == 0 and len(alive := json.loads(done.stdout.strip().splitlines()[-1])) >= count:
                self.node_ids = [*self.node_ids, *[n for n in alive if n not in self.node_ids]]
                return
            time.sleep(0.5)
        raise TimeoutError(f"Ray cluster did not show {count} nodes within {timeout} s: {last}")

    def stop(self) -> None:
        """End every process this cluster started: each `ray start` process group, and by PID every
        descendant (Ray's workers put themselves in sessions of their own)."""
        groups = [p.pid for p in self.processes]
        tree = descendants(set(groups))
        for pid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(p.poll() is None for p in self.processes):
            time.sleep(0.1)
        for pid in groups:  # `ray start --block` may ignore SIGTERM, and raylet's workers linger: the group goes
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for p in self.processes:
            with contextlib.suppress(Exception):
                p.wait(timeout=10)
        self.processes.clear()
        self.node_ids.clear()


def descendants(roots: set[int]) -> set[int]:
    """Every process below `roots` (from /proc's parent ids), taken before anything is killed."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            parents[int(stat.parent.name)] = int(text[text.rindex(")") + 2:].split()[1])
    found: set[int] = set()
    frontier = set(roots)
    while frontier:
        children = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= children
        frontier = children
    return found


@contextlib.contextmanager
def ray_cluster(num_cpus: int = 2, *, loopback_only: bool = True) -> Iterator[RayCluster]:
    """A head with `num_cpus`. While it runs, a loopback-only cluster's switch is in this process's environment
    too, so the drivers started from here (the Ray executor's driver process) connect to 127.0.0.1."""
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's unix socket paths must fit 107 bytes
    cluster = RayCluster(temp, loopback_only=loopback_only)
    before = os.environ.get(SINGLE_NODE)
    if loopback_only:
        os.environ[SINGLE_NODE] = "0"
    try:
        cluster.start_node(num_cpus=num_cpus, head=True)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(temp, ignore_errors=True)
        if before is None:
            os.environ.pop(SINGLE_NODE, None)
        else:
            os.environ[SINGLE_NODE] = before
