"""Ray for collection: join a cluster (or start one here) with checks that fail fast, and a
TorchRL ``RayCollector`` whose remote collectors step the recipe's environments.

Ray is an optional extra (``pip install -e ".[ray]"``); nothing here imports it until a Ray
collector is asked for. ``ray.init`` on an address nobody answers retries forever, and remote
collectors that ask for more CPUs than the cluster has wait forever, so both are checked first.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from torch import nn

from torchrl_awr.recipe.network import connect_error

RAY_EXTRA = "pip install -e '.[ray]'"
LOCAL_ADDRESSES = (None, "local")


def import_ray():
    """The ``ray`` module, or one ``ImportError`` naming the extra to install."""
    try:
        return importlib.import_module("ray")
    except ImportError as err:
        raise ImportError(f"collector.type=ray needs Ray, which is not installed: {RAY_EXTRA}") from err


def head_node(address: str | None) -> tuple[str, int] | None:
    """``(host, port)`` of a ``[ray://]host:port`` address; ``None`` for a local Ray (``null`` or
    ``local``) and for ``auto`` (the cluster started on this machine with ``ray start``)."""
    if address in LOCAL_ADDRESSES or address == "auto":
        return None
    host, sep, port = str(address).removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"collector.ray.address={address!r} is not an address; use null (a local Ray), auto "
            "(the cluster started here with `ray start`) or host:port of the head node."
        )
    return host, int(port)


def check_reachable(address: str, timeout: float) -> None:
    """Refuses, within ``timeout`` seconds, a head node nobody listens on (``auto`` is left to
    Ray, which answers at once when there is no cluster)."""
    node = head_node(address)
    if node is None:
        return
    error = connect_error(*node, timeout)
    if error is not None:
        raise ConnectionError(
            f"No Ray head node answers at collector.ray.address={address} ({error}); start one there with "
            "`ray start --head --port=<port>`, or use collector.ray.address=null for a local Ray."
        ) from error


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    object_store_mib: int | None = None,
    connect_timeout: float = 30.0,
) -> bool:
    """Connects to the Ray cluster at ``address``, or starts a local one (``address=None``);
    returns whether this call started Ray (and so owns its shutdown).

    An initialised Ray (the user's own ``ray.init``) is used as it is.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    settings = dict(include_dashboard=False, log_to_driver=False, logging_level="warning")
    if address in LOCAL_ADDRESSES:
        settings.update(num_cpus=num_cpus)
        if object_store_mib is not None:
            settings["object_store_memory"] = int(object_store_mib) * 2**20
    else:
        check_reachable(address, connect_timeout)
        settings["address"] = address
    # A local Ray announces that it turned token authentication on (it does so by default since
    # Ray 2.59): advice for whoever runs a cluster, not this run's news.
    token_setup = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = token_setup.level
    token_setup.setLevel(logging.ERROR if address in LOCAL_ADDRESSES else level)
    try:
        ray.init(**settings)
    except ConnectionError as err:
        raise ConnectionError(
            f"{err} (collector.ray.address={address}). A cluster with token authentication (local clusters "
            "since Ray 2.59) accepts only drivers with RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN, or "
            "~/.ray/auth_token from `ray get-auth-token`)."
        ) from err
    finally:
        token_setup.setLevel(level)
    return True


def check_resources(num_workers: int, worker_cpus: float, worker_memory_gib: float) -> None:
    """Refuses remote collectors the cluster cannot place all at once (Ray would wait forever)."""
    ray = import_ray()
    available = ray.cluster_resources()
    needs = {
        "CPU": (num_workers * worker_cpus, "collector.num_workers x collector.ray.worker_cpus"),
        "memory": (num_workers * worker_memory_gib * 2**30, "collector.num_workers x collector.ray.worker_memory_gib"),
    }
    for resource, (needed, keys) in needs.items():
        have = available.get(resource, 0.0)
        if needed > have:
            unit, scale = ("GiB", 2**30) if resource == "memory" else ("CPUs", 1)
            raise ValueError(
                f"The Ray remote collectors need {needed / scale:g} {unit} ({keys}); the cluster has "
                f"{have / scale:g}. Lower them, or add nodes to the cluster."
            )


def make_ray_collector(
    env_fn: Callable,
    policy: nn.Module,
    *,
    num_workers: int,
    frames_per_batch: int,
    total_frames: int,
    sync: bool,
    worker_cpus: float = 1.0,
    worker_memory_gib: float = 1.0,
):
    """A ``RayCollector`` of ``num_workers`` remote ``Collector``\\ s, each stepping the envs of
    ``env_fn()`` with a CPU copy of ``policy`` (weights, action std and observation normaliser
    sent by ``update_policy_weights_``).

    ``sync=True``: each batch stacks one ``[n_envs, T]`` rollout per worker, all collected with
    the current weights, and each worker's envs continue from batch to batch. ``sync=False``:
    each batch is one worker's rollout, first ready first served, collected with the weights the
    worker last received (while the trainer learned from the previous batch).
    ``total_frames`` bounds the collection (a ``RayCollector`` has no endless mode).
    """
    import_ray()
    from torchrl.collectors import Collector
    from torchrl.collectors.distributed import RayCollector

    check_resources(num_workers, worker_cpus, worker_memory_gib)
    return RayCollector(
        [env_fn] * num_workers,
        policy,
        collector_class=Collector,
        collector_kwargs={"auto_register_policy_transforms": False},
        frames_per_batch=frames_per_batch,
        total_frames=total_frames,
        sync=sync,
        remote_configs={"num_cpus": worker_cpus, "num_gpus": 0, "memory": int(worker_memory_gib * 2**30)},
        device="cpu",
    )
