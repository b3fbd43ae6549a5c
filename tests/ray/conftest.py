"""A real Ray head for the ``ray`` tests, started as a user would, on 127.0.0.1 only.

``ray start --head --block`` runs as a child process in a session of its own,
with its own temp dir and its own token file (token authentication is on by
default in current Ray: ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH``), two
CPUs, a small object store and no dashboard; ``--node-ip-address=127.0.0.1`` with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps every listener on loopback. It is
stopped by its own process group, never with ``ray stop`` (which finds Ray
processes across the whole machine).

Without ``ray`` installed the tests skip, saying how to run them; under CI
(``CI=true``) a missing ``ray`` is a failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0


def _need_ray() -> None:
    import importlib.util

    # Found, not imported: Ray reads some of its settings from the environment on import,
    # so it is imported only once the cluster's environment is in place.
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs the Ray tests: install the ray extra (pip install -e '.[ray]')")
        pytest.skip("the Ray tests need ray: pip install -e '.[ray]', then pytest -m ray")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cluster_env(temp_dir: Path) -> dict[str, str]:
    """The environment of the test cluster's processes and of the driver connecting to it."""
    token = temp_dir / "auth_token"
    if not token.exists():
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
    return {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        # Workers import the test modules' step functions, and flujo from this tree.
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
    }


@dataclass(frozen=True)
class RayHead:
    """The test cluster: its address and the process group its processes run in."""

    address: str
    pgid: int
    temp_dir: Path


@pytest.fixture(scope="session")
def ray_address(ray_head: RayHead) -> str:
    """The address of the session's Ray head, which this process is connected to."""
    return ray_head.address


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """Start a Ray head on loopback for the session; yield it, connected."""
    _need_ray()
    temp_dir = Path(tempfile.mkdtemp(prefix="fr", dir="/tmp"))  # socket paths must stay short
    port = _free_port()
    env = cluster_env(temp_dir)
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    import ray

    ray_cli = str(Path(sys.executable).with_name("ray"))
    with (temp_dir / "head.log").open("w") as head_log:  # the child keeps its own handle
        head = _start_head(ray_cli, port, temp_dir, env, head_log)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        log = temp_dir / "head.log"
        # Connect only once the head says it is up: ray.init against a head still
        # starting waits tens of seconds per try.
        while "will now block" not in log.read_text():
            if head.poll() is not None:
                pytest.fail(
                    f"the Ray head exited with {head.returncode}:\n{log.read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the Ray head did not start in {START_TIMEOUT_S} s:\n{log.read_text()[-2000:]}"
                )
            time.sleep(0.2)
        # The driver's own address too: a Ray imported before this environment was set
        # (another test's collection) would take the machine's address and never connect.
        ray.init(address=address, log_to_driver=False, _node_ip_address="127.0.0.1")
        yield RayHead(address, head.pid, temp_dir)
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        _stop(head)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(temp_dir, ignore_errors=True)


def _start_head(
    ray_cli: str, port: int, temp_dir: Path, env: dict[str, str], log: Any
) -> subprocess.Popen[bytes]:
    """Start ``ray start --head --block`` in a session of its own, its output into ``log``."""
    return subprocess.Popen(
        [
            ray_cli,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--object-store-memory=100000000",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(head: subprocess.Popen[bytes]) -> None:
    """Stop the head and everything it started, by its own process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=10)
    # Workers and raylet share the head's session: whatever outlived it goes now.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)


@dataclass
class TwoNodes:
    """A ``ray.cluster_utils.Cluster``: a head (1 CPU) and a worker node (1 CPU)."""

    cluster: Any
    worker: Any
    head_node_id: str

    def add_worker(self) -> None:
        """Start a new worker node (after a test removed the last one)."""
        self.worker = self.cluster.add_node(**_node_args())
        # Until the GCS has marked the removed node dead, Ray may still place work on it.
        self.cluster.wait_for_nodes()


def _node_args() -> dict[str, Any]:
    return {"node_ip_address": "127.0.0.1", "num_cpus": 1, "object_store_memory": 80_000_000}


@pytest.fixture(scope="module")
def _two_node_cluster(ray_head: RayHead) -> Iterator[TwoNodes]:
    import ray
    from ray.cluster_utils import Cluster

    # One driver talks to one cluster: leave the session's head for the module's tests.
    ray.shutdown()
    temp_dir = Path(tempfile.mkdtemp(prefix="fc", dir="/tmp"))
    (temp_dir / "ray").mkdir()  # where Ray keeps what belongs in its default temp dir
    # RAY_TMPDIR: Cluster writes (and deletes) "ray_current_cluster" in Ray's default temp
    # dir, which other Ray users of the machine share. The nodes read the head's token
    # file (already in this environment): Ray caches the first token a process reads.
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(temp_dir)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**_node_args(), "temp_dir": str(temp_dir), "include_dashboard": False},
    )
    try:
        worker = cluster.add_node(**_node_args())
        ray.init(address=cluster.address, log_to_driver=False, _node_ip_address="127.0.0.1")
        nodes = TwoNodes(cluster, worker, cluster.head_node.node_id)
        yield nodes
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        cluster.shutdown()
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        shutil.rmtree(temp_dir, ignore_errors=True)
        # The session's other tests stay connected to its head.
        ray.init(address=ray_head.address, log_to_driver=False, _node_ip_address="127.0.0.1")


@pytest.fixture
def ray_two_nodes(_two_node_cluster: TwoNodes) -> TwoNodes:
    """A two-node cluster on loopback, this process connected; a removed worker comes back."""
    nodes = _two_node_cluster
    if nodes.worker not in nodes.cluster.worker_nodes:
        nodes.add_worker()
    return nodes
