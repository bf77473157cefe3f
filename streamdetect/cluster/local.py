"""A whole cluster on this machine, for demos, `cluster serve` and `cluster bench`: a private redis-server (unless
one is given), N emulated Ray nodes (ray.cluster_utils.Cluster: real raylets and worker processes, one machine),
the director and the wanted streams. Everything started here is stopped on leaving the `with` block.

Ray rewrites 127.0.0.1 to this machine's interface address and turns token auth on for `ray start --head`
(2.60); emulated nodes avoid both for one-machine use. Node death is noticed in ~1.5-2.5 s instead of ~15 s: the
GCS health check is tightened (FAST_HEALTH) for clusters started here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

from streamdetect.cluster.store import ClusterError

FAST_HEALTH = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3",
               "RAY_health_check_timeout_ms": "500", "RAY_health_check_initial_delay_ms": "500"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """redis-server on a free loopback port, no persistence, in its own process group."""

    def __init__(self):
        binary = shutil.which("redis-server")
        if binary is None:
            raise ClusterError("redis-server is not installed (apt-get install redis-server), and no --redis URL given")
        self.folder = tempfile.mkdtemp(prefix="streamdetect-redis-")
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise ClusterError("redis-server did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class LocalCluster:
    """with LocalCluster(nodes=2, streams=[SourceConfig(...), ...]) as lc: lc.director, lc.redis_url, lc.nodes"""

    def __init__(self, nodes: int = 2, streams=(), redis_url: str | None = None, prefix: str = "sd",
                 config=None, cpus_per_node: int = 2, **director_options):
        self.n, self.streams, self.redis_url, self.prefix = nodes, list(streams), redis_url, prefix
        self.config, self.cpus, self.director_options = config, cpus_per_node, director_options
        self.redis = self.cluster = self.director = None
        self.nodes: list = []

    def __enter__(self) -> LocalCluster:
        import ray
        from ray.cluster_utils import Cluster

        from streamdetect.cluster.director import connect_ray, start_director

        try:
            if self.redis_url is None:
                self.redis = PrivateRedis()
                self.redis_url = self.redis.url
            os.environ.update({k: v for k, v in FAST_HEALTH.items() if k not in os.environ})
            self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": self.cpus, "include_dashboard": False})
            self.nodes = [self.cluster.head_node] + [self.cluster.add_node(num_cpus=self.cpus) for _ in range(self.n - 1)]
            self.cluster.wait_for_nodes()
            connect_ray(self.cluster.address)
            self.director = start_director(self.redis_url, self.prefix, config=self.config, **self.director_options)
            for sc in self.streams:
                ray.get(self.director.add_stream.remote(sc.url, sc.name, sc.realtime, sc.loop, sc.transport),
                        timeout=300)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def raylet_pid(self, i: int) -> int | None:
        try:
            return self.nodes[i].all_processes["raylet"][0].process.pid
        except (KeyError, IndexError, AttributeError):
            return None

    def __exit__(self, *exc) -> None:
        import ray

        try:
            if self.director is not None:
                for sc in self.streams:  # a shared Redis keeps no stream this run added
                    try:
                        ray.get(self.director.remove_stream.remote(sc.name), timeout=30)
                    except Exception:
                        pass
                ray.get(self.director.shutdown.remote(), timeout=60)
                ray.kill(self.director, no_restart=True)
        except Exception:
            pass
        if ray.is_initialized():
            ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()
        if self.redis is not None:
            self.redis.stop()
