"""A real multi-node Ray cluster on this machine, for tests: a head and worker nodes started
with ``ray start`` as separate processes on 127.0.0.1, with token auth (docs/architecture.md,
"How Ray is used").

Stopping it never touches anyone else's Ray. ``ray stop`` would: it stops every Ray
process on the machine (other test sessions' too) and has no option to pick one
cluster. Instead each node runs ``ray start --block`` in its own session; the processes
it starts (GCS, raylet, dashboard, agents, workers, and the drivers of submitted jobs)
inherit a marker environment variable unique to this cluster. ``stop()`` signals the
``ray start`` processes' groups (their children share the node's fate), then kills by
pid whatever still carries the marker — only this cluster's processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import processes

from paw_ray.train.cluster import LOCAL_SYSTEM_CONFIG, free_local_port

MARKER = "PAW_RAY_TEST_CLUSTER"


free_port = free_local_port  # ports for the test clusters' nodes and servers, on 127.0.0.1


def _ray_bin() -> str:
    return os.path.join(os.path.dirname(sys.executable), "ray")


class LocalCluster:
    """``LocalCluster(head_cpus=1, workers=[2, 2])``: a head and one worker node per entry
    (its CPU count); each node gets a custom resource ``paw_<name>`` to tell them apart."""

    def __init__(self, head_cpus: float = 1, workers: tuple[int, ...] = (2, 2), env: dict | None = None):
        self.id = uuid.uuid4().hex[:8]
        self.head_cpus, self.worker_cpus = head_cpus, list(workers)
        self._fresh_places()
        self.env = {**os.environ, **(env or {})}
        venv_bin = os.path.dirname(sys.executable)
        self.env.update({
            MARKER: self.id,
            "RAY_AUTH_MODE": "token",
            # drivers of submitted jobs run `python`: this environment's
            "PATH": venv_bin + os.pathsep + self.env.get("PATH", ""),
            "RAY_DEDUP_LOGS": "0",
            "RAY_TRAIN_V2_ENABLED": "1",
            # a busy 2-core machine: the default 30 s for a raylet to register is not always enough
            "RAY_raylet_start_wait_time_s": "120",
            **{f"RAY_{key}": str(value) for key, value in LOCAL_SYSTEM_CONFIG.items()},
        })
        for key in ("RAY_ADDRESS", "PYTEST_CURRENT_TEST"):
            self.env.pop(key, None)
        self.node_names = ["head"] + [f"worker{i + 1}" for i in range(len(workers))]

    # ------------------------------------------------------------------ start / stop

    def _node_ports(self) -> list[str]:
        return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                "--dashboard-agent-listen-port", str(free_port()),
                "--dashboard-agent-grpc-port", str(free_port()),
                "--metrics-export-port", str(free_port()),
                "--runtime-env-agent-port", str(free_port())]

    def _spawn(self, name: str, args: list[str]) -> None:
        log = os.path.join(self.temp_dir, f"ray-start-{name}.log")
        self.logs.append(log)
        with open(log, "wb") as out:
            p = subprocess.Popen([_ray_bin(), "start", "--block", *args, *self._node_ports()],
                                 env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=self.temp_dir)
        self.procs.append(p)

    def start(self, timeout: float = 180.0, attempts: int = 2) -> "LocalCluster":
        """Start the head, then each worker; on a loaded machine a node can time out in Ray's
        own start-up (its raylet waits for the dashboard agent), so a failed start is stopped
        and tried again from scratch, up to ``attempts`` times."""
        for _ in range(attempts - 1):
            try:
                return self._start_once(timeout)
            except (TimeoutError, RuntimeError):  # _start_once stopped what it had started
                self._fresh_places()
        return self._start_once(timeout)

    def _fresh_places(self) -> None:
        """A new temp dir and ports, and no processes yet."""
        # short: Ray's unix sockets live under the temp dir (path length limit)
        self.temp_dir = tempfile.mkdtemp(prefix="pmn", dir="/tmp")
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.procs: list[subprocess.Popen] = []
        self.logs: list[str] = []

    def _start_once(self, timeout: float) -> "LocalCluster":
        try:
            self._spawn("head", ["--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
                                 "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port),
                                 "--ray-client-server-port", str(free_port()),
                                 "--num-cpus", str(self.head_cpus), "--num-gpus", "0",
                                 "--resources", json.dumps({"paw_head": 1}),
                                 "--temp-dir", self.temp_dir, "--disable-usage-stats"])
            self.wait_nodes(1, timeout)
            # one node at a time, each in its own temp dir: nodes starting together on one
            # machine can race for the same socket names in a shared session folder
            for i in range(len(self.worker_cpus)):
                self._spawn_worker(i + 1, os.path.join(self.temp_dir, f"w{i + 1}"))
                self.wait_nodes(2 + i, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn_worker(self, node: int, temp_dir: str) -> None:
        """``ray start`` of worker node ``node`` (its index in ``procs``), joined to the head."""
        name = self.node_names[node]
        self._spawn(name, ["--address", self.address, "--node-ip-address", "127.0.0.1",
                           "--num-cpus", str(self.worker_cpus[node - 1]), "--num-gpus", "0",
                           "--resources", json.dumps({f"paw_{name}": 1}), "--temp-dir", temp_dir,
                           "--disable-usage-stats"])

    def stop_node(self, node: int) -> None:
        """Lose worker node ``node`` (its index in ``procs``) as a machine is lost: its ``ray
        start``, raylet and workers killed at once, by pid."""
        for pid in processes.descendants(self.procs[node].pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.procs[node].wait(timeout=30)

    def restart_node(self, node: int, timeout: float = 180.0) -> None:
        """Start worker node ``node`` again after ``stop_node``: the same name and CPUs, a new
        Ray node (new id, new temp dir); returns once the cluster counts it alive."""
        alive = sum(1 for x in self.nodes() if x.get("state") == "ALIVE")
        self._spawn_worker(node, os.path.join(self.temp_dir, f"w{node}-again"))
        self.procs[node], self.logs[node] = self.procs.pop(), self.logs.pop()
        self.wait_nodes(alive + 1, timeout)

    def stop(self, grace: float = 15.0) -> list[int]:
        """Stop this cluster's processes only; return the pids that had to be killed by marker."""
        for p in reversed(self.procs):  # workers first, head last
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + grace
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
        leftovers = self.marked_pids()
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not os.environ.get("PAW_KEEP_CLUSTER_LOGS"):
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        return leftovers

    def marked_pids(self) -> list[int]:
        """Pids of processes carrying this cluster's marker in their environment."""
        return [pid for pid in processes.pids() if processes.has_env(pid, f"{MARKER}={self.id}")]

    # ------------------------------------------------------------------ use

    def ray(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess:
        """Run the ``ray`` CLI against this cluster (token auth on)."""
        env = {**self.env, "RAY_ADDRESS": self.dashboard_url}
        out = subprocess.run([_ray_bin(), *args], env=env, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"ray {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out

    def nodes(self) -> list[dict]:
        out = self.ray("list", "nodes", "--format", "json", "--limit", "100")
        return json.loads(out.stdout)

    def wait_nodes(self, n: int, timeout: float) -> None:
        deadline = time.time() + timeout
        last = ""
        while time.time() < deadline:
            for p, log in zip(self.procs, self.logs):
                if p.poll() is not None:
                    raise RuntimeError(f"ray start exited ({p.returncode}):\n{open(log).read()[-3000:]}")
            try:
                alive = [x for x in self.nodes() if x.get("state") == "ALIVE"]
                if len(alive) >= n:
                    return
                last = f"{len(alive)} node(s) alive"
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                last = str(e)[-500:]
            time.sleep(2)
        raise TimeoutError(f"cluster did not reach {n} node(s) in {timeout}s: {last}")

    def node_names_by_id(self) -> dict[str, str]:
        """node_id -> head / worker1 / ... (from each node's custom resource)."""
        out = {}
        for node in self.nodes():
            resources = node.get("resources_total") or {}
            names = [k[len("paw_"):] for k in resources if k[len("paw_"):] in self.node_names]
            out[node["node_id"]] = names[0] if names else node["node_id"][:8]
        return out
