"""Ray Serve replicas, in words Ray is not needed for: how many, of what size (`Scaling`), and whether a cluster
can hold them (`check_placement`). `jina_onnx.serve.ray` deploys them; the CLI checks what it can here first,
before Ray is imported or started.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..errors import InputError, JinaOnnxError


class ReplicaError(JinaOnnxError):
    """Ray cannot place or start a replica: no node has the CPUs or GPUs one asks for, or its models do not load
    (exit code 1, a user error)."""


@dataclasses.dataclass(frozen=True)
class Scaling:
    """How many replicas, of what size: `serve --ray`'s options and a config file's `args`.

    `replicas` None means autoscaled between `min_replicas` and `max_replicas`, aiming at `target_requests`
    requests in each replica.

    Example:
        >>> Scaling(replicas=None, max_replicas=4).deployment_options()["autoscaling_config"]["max_replicas"]
        4
    """

    replicas: int | None = 1
    min_replicas: int = 1
    max_replicas: int = 2
    target_requests: float = 16.0
    max_requests: int = 64
    cpus_per_replica: float = 2.0
    gpus_per_replica: float = 0.0
    upscale_delay_s: float = 10.0
    downscale_delay_s: float = 120.0

    def __post_init__(self) -> None:
        checks = [
            (self.replicas is None or 1 <= self.replicas <= 1024, f"--replicas {self.replicas}: use 1 to 1024 or auto"),
            (
                1 <= self.min_replicas <= self.max_replicas <= 1024,
                (
                    f"--min-replicas {self.min_replicas} / --max-replicas {self.max_replicas}: need "
                    "1 <= min <= max <= 1024"
                ),
            ),
            (
                0 < self.target_requests <= self.max_requests,
                (
                    f"--target-requests {self.target_requests:g}: use more than 0 and at most --max-requests "
                    f"({self.max_requests})"
                ),
            ),
            (1 <= self.max_requests <= 4096, f"--max-requests {self.max_requests}: use 1 to 4096"),
            (0 < self.cpus_per_replica <= 1024, f"--cpus-per-replica {self.cpus_per_replica:g}: use more than 0"),
            (0 <= self.gpus_per_replica <= 16, f"--gpus-per-replica {self.gpus_per_replica:g}: use 0 to 16"),
            (0 <= self.upscale_delay_s <= 3600 and 0 <= self.downscale_delay_s <= 86400, "scaling delays: 0 or more"),
        ]
        if any(isinstance(v, float) and not math.isfinite(v) for v in dataclasses.astuple(self)):
            raise InputError(f"scaling settings must be finite numbers: {self}")
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def deployment_options(self) -> dict[str, Any]:
        """`serve.deployment` options: replica count or autoscaling, resources, requests in flight."""
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_requests,
            "ray_actor_options": {"num_cpus": self.cpus_per_replica, "num_gpus": self.gpus_per_replica},
            # A replica's health check is a Ray call made while it serves: every 2 s, with 10 s to answer, so
            # one slow answer is no reason to replace it.
            "health_check_period_s": 2.0,
            "health_check_timeout_s": 10.0,
            "graceful_shutdown_timeout_s": 10.0,
        }
        if self.replicas is None:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "initial_replicas": self.min_replicas,
                "target_ongoing_requests": self.target_requests,
                "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s,
                "metrics_interval_s": 1.0,
                "look_back_period_s": 2.0,
            }
        else:
            options["num_replicas"] = self.replicas
        return options

    def fewest(self) -> int:
        return self.min_replicas if self.replicas is None else self.replicas


def check_placement(nodes: list[dict[str, Any]], scaling: Scaling) -> None:
    """ReplicaError unless the cluster's nodes can hold the fewest replicas asked for.

    Ray waits without a word for a replica no node can hold; this says so at once. Replicas are placed first
    fit, one node each, as Ray can place them (`nodes`: `ray.nodes()`).

    Example:
        >>> check_placement([{"Alive": True, "Resources": {"CPU": 4.0}}], Scaling(replicas=2, cpus_per_replica=2))
        >>> check_placement([{"Alive": True, "Resources": {"CPU": 2.0}}], Scaling(cpus_per_replica=4))
        Traceback (most recent call last):
        ...
        jina_onnx.serve.replicas.ReplicaError: a replica of 4 CPUs and 0 GPUs fits on no node of this Ray cluster ...
    """
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    free = [[float(r.get("CPU", 0)), float(r.get("GPU", 0))] for r in alive]
    have = "; ".join(f"{cpu:g} CPUs, {gpu:g} GPUs" for cpu, gpu in sorted(free, reverse=True)) or "none"
    want = f"a replica of {scaling.cpus_per_replica:g} CPUs and {scaling.gpus_per_replica:g} GPUs"
    for placed in range(scaling.fewest()):
        node = next(
            (
                i
                for i, (cpu, gpu) in enumerate(free)
                if cpu + 1e-9 >= scaling.cpus_per_replica and gpu + 1e-9 >= scaling.gpus_per_replica
            ),
            None,
        )
        if node is None:
            where = "fits on no node" if placed == 0 else f"fits {placed} times, not {scaling.fewest()},"
            raise ReplicaError(
                f"{want} {where} of this Ray cluster (its nodes: {have}); lower --cpus-per-replica, "
                "--gpus-per-replica or --replicas, or add nodes"
            )
        free[node][0] -= scaling.cpus_per_replica
        free[node][1] -= scaling.gpus_per_replica
