"""Offline datasets on disk: our memory-mapped format, Minari's, and the checks before training.

A dataset directory holds a memory-mapped TensorDict (``TensorDict.load_memmap``) of transitions
``[N]`` in time order, episode after episode — ``observation``, ``action``, ``("next",
observation / reward / done / terminated / truncated)`` and ``episode`` (its index) — and
``dataset.json``: the env id, how the data was made, and the episodes' returns. An episode ends
where ``("next", "done")`` is set: ``terminated`` (a failure: no value after it) or
``truncated`` (a time limit, or data that stops: its last state's value is bootstrapped).

Minari datasets live in the local Minari store (``MINARI_DATASETS_PATH``, by default
``~/.minari/datasets``; the ``offline`` extra) and are read through TorchRL's
``MinariExperienceReplay``. ``torchrl-awr dataset make`` (:mod:`torchrl_awr.recipe.dataset_makers`) makes both kinds.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
import tqdm as tqdm_module
from tensordict import TensorDict, TensorDictBase

MINARI_EXTRA = "pip install -e '.[offline]'"


DATA_FILE = "data"


META_FILE = "dataset.json"


NEXT_KEYS = ("observation", "reward", "done", "terminated", "truncated")


class DatasetError(ValueError):
    """A dataset that cannot be trained on: the message names the problem and the path."""


def dataset_fields(data: TensorDictBase) -> TensorDict:
    """The dataset's keys of collected transitions; ``truncated`` is a ``done`` that is not
    ``terminated`` (a time limit, or a cut where the data stops)."""
    done = data.get(("next", "done")).bool()
    terminated = data.get(("next", "terminated")).bool()
    return TensorDict(
        {
            "observation": data.get("observation").float(),
            "action": data.get("action").float(),
            "next": {
                "observation": data.get(("next", "observation")).float(),
                "reward": data.get(("next", "reward")).float(),
                "done": done,
                "terminated": terminated,
                "truncated": done & ~terminated,
            },
        },
        batch_size=data.shape,
    )


def episode_indices(done: torch.Tensor) -> torch.Tensor:
    """Each transition's episode index, from the ``done`` flags of transitions in episode order."""
    done = done.reshape(-1).long()
    return done.cumsum(0) - done


def write_dataset(
    data: TensorDict, out: str | Path, *, env_id: str, env_kwargs: dict, task: str | None, source: dict
) -> dict:
    """Writes ``data`` and its ``dataset.json`` into the new directory ``out``: the environment
    (``env_id`` made with ``env_kwargs``; ``task``: the recipe preset, if one), ``source`` (how
    the data was made) and the episodes' returns. Returns that meta."""
    out = Path(out)
    check_new_directory(out)
    check_transitions(data, out)
    meta = {
        "env_id": env_id,
        "env_kwargs": dict(env_kwargs),
        "task": task,
        **data_summary(data),
        "source": source,
    }
    out.mkdir(parents=True, exist_ok=True)
    data.memmap(out / DATA_FILE)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def check_new_directory(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out} exists and is not an empty directory; a dataset goes into a new directory.")


def data_summary(data: TensorDictBase) -> dict:
    """Transitions, episodes and the episodes' mean and sd return."""
    returns = episode_returns(data)
    return {
        "transitions": data.shape[0],
        "episodes": len(returns),
        "return_mean": returns.mean().item(),
        "return_std": returns.std(unbiased=False).item(),
    }


def episode_returns(data: TensorDictBase) -> torch.Tensor:
    """The return of each episode (``episode`` index order)."""
    episode = data.get("episode")
    reward = data.get(("next", "reward")).reshape(-1).double()
    return torch.zeros(int(episode.max()) + 1, dtype=torch.float64).index_add_(0, episode, reward)


def load_dataset(path: str | Path, *, observation_dim: int | None = None, action_dim: int | None = None):
    """A dataset directory's transitions (memory-mapped) and its meta, checked: every key
    present, every value finite, episodes that end, and (if given) the task's shapes."""
    path = Path(path)
    if not (path / META_FILE).is_file() or not (path / DATA_FILE).is_dir():
        raise DatasetError(f"No dataset at {path}: it needs {META_FILE} and {DATA_FILE}/ (torchrl-awr dataset make).")
    meta = json.loads((path / META_FILE).read_text())
    try:  # tensors and JSON only: a pickled object (which could run code on loading) is refused
        data = TensorDict.load_memmap(path / DATA_FILE, allow_pickle=False)
    except (OSError, RuntimeError, KeyError, ValueError) as err:
        raise DatasetError(
            f"{path / DATA_FILE} cannot be read as tensors and JSON, all that a dataset holds (a pickled object is "
            "refused: loading it could run code)."
        ) from err
    check_transitions(data, path)
    check_shapes(data, path, observation_dim=observation_dim, action_dim=action_dim)
    return data, meta


def load_training_data(name: str, *, env_id: str, observation_dim: int, action_dim: int) -> tuple[TensorDict, dict]:
    """The dataset named by a recipe's ``dataset=``: a directory written by ``make --out``, or
    else the id of a Minari dataset in the local Minari store. Its transitions are checked as
    :func:`load_dataset` checks them, and its env id must be the task's."""
    path = Path(name)
    if path.is_dir():
        data, meta = load_dataset(path, observation_dim=observation_dim, action_dim=action_dim)
    elif path.exists():
        raise DatasetError(f"dataset={name} is a file; a dataset is a directory (or a Minari dataset id).")
    else:
        data, meta = load_minari(name)
        check_shapes(data, name, observation_dim=observation_dim, action_dim=action_dim)
    if meta["env_id"] != env_id:
        raise DatasetError(f"{name} was recorded on {meta['env_id']}; this task is {env_id}.")
    return data, meta


def check_shapes(data: TensorDictBase, name: object, *, observation_dim: int | None, action_dim: int | None) -> None:
    """The observations and actions have the task's sizes."""
    for what, expected in (("observation", observation_dim), ("action", action_dim)):
        if expected is not None and data.get(what).shape[-1] != expected:
            raise DatasetError(
                f"{name}: its {what}s have {data.get(what).shape[-1]} dimensions; the task's have {expected}."
            )


def minari_root() -> Path:
    """The local Minari store: ``MINARI_DATASETS_PATH``, by default ``~/.minari/datasets``."""
    return Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")


def import_minari():
    if importlib.util.find_spec("minari") is None:
        raise ImportError(f"Minari datasets need the minari package: {MINARI_EXTRA}.")
    import minari

    return minari


def load_minari(dataset_id: str) -> tuple[TensorDict, dict]:
    """A Minari dataset of the local store, read through TorchRL's ``MinariExperienceReplay``
    (nothing is downloaded), as the dataset's transitions and meta."""
    source = minari_root() / dataset_id / "data" / "main_data.hdf5"
    if not source.is_file():
        raise DatasetError(
            f"dataset={dataset_id}: no such dataset directory, and no Minari dataset {dataset_id!r} in the local "
            f"Minari store (looked for {source}; MINARI_DATASETS_PATH sets the store)."
        )
    import_minari()
    from torchrl.data.datasets import MinariExperienceReplay

    with tempfile.TemporaryDirectory() as root, _patched_minari_loader():
        replay = MinariExperienceReplay(
            dataset_id, batch_size=1, root=root, download=False, load_from_local_minari=True
        )
        stored = replay.storage._storage
        data = dataset_fields(stored).clone()  # out of the temporary files
        data["episode"] = stored.get("episode").clone()
        env_id = replay.metadata["env_spec"]["id"] if replay.metadata.get("env_spec") else None
    check_transitions(data, dataset_id)
    meta = {"env_id": env_id, **data_summary(data), "source": {"from": "minari", "dataset_id": dataset_id}}
    return data, meta


@contextlib.contextmanager
def _patched_minari_loader():
    """TorchRL 0.14's ``MinariExperienceReplay`` fills the dataset in memory, then writes it with
    ``TensorDict.memmap_like``, which allocates the files without copying: every value reads
    back as zero. While active, that call writes the content (``memmap``), and the loader's INFO
    lines (the whole data structure) and its progress bar (a line per episode in a log file) are
    silenced."""
    original = TensorDict.memmap_like
    torchrl_logger = logging.getLogger("torchrl")
    level = torchrl_logger.level
    bar = tqdm_module.tqdm  # the loader imports it from its module when it runs

    def memmap_like(self, prefix=None, *args, **kwargs):
        return self.memmap(prefix) if type(self) is TensorDict else original(self, prefix, *args, **kwargs)

    TensorDict.memmap_like = memmap_like
    torchrl_logger.setLevel(logging.WARNING)
    tqdm_module.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        TensorDict.memmap_like = original
        torchrl_logger.setLevel(level)
        tqdm_module.tqdm = bar


def check_new_minari_id(dataset_id: str):
    """Minari is installed and the local store has no dataset ``dataset_id`` yet; returns minari."""
    minari = import_minari()
    if (minari_root() / dataset_id).exists():
        raise DatasetError(f"The Minari dataset {dataset_id!r} exists already in {minari_root()}.")
    return minari


def write_minari(data: TensorDictBase, dataset_id: str, env_id: str, source: dict) -> Path:
    """Writes the episodes of ``data`` as the Minari dataset ``dataset_id`` in the local store."""
    minari = check_new_minari_id(dataset_id)
    from minari.data_collector import EpisodeBuffer

    check_transitions(data, dataset_id)
    episode = data.get("episode")
    starts = torch.cat([torch.tensor([True]), episode[1:] != episode[:-1]]).nonzero().reshape(-1).tolist()
    ends = [*starts[1:], data.shape[0]]
    buffers = []
    for index, (start, end) in enumerate(zip(starts, ends)):
        steps = data[start:end]
        observations = torch.cat([steps.get("observation"), steps.get(("next", "observation"))[-1:]])
        buffers.append(
            EpisodeBuffer(
                id=index,
                observations=observations.numpy(),
                actions=steps.get("action").numpy(),
                rewards=steps.get(("next", "reward")).reshape(-1).double().numpy(),
                terminations=steps.get(("next", "terminated")).reshape(-1).numpy(),
                truncations=steps.get(("next", "truncated")).reshape(-1).numpy(),
                infos={},
            )
        )
    with warnings.catch_warnings():  # Minari's advice to name an author, a code link and an eval env
        warnings.filterwarnings(
            "ignore", r"`(code_permalink|author|author_email|eval_env)` is set to None", UserWarning
        )
        minari.create_dataset_from_buffers(
            dataset_id, buffers, env=env_id, algorithm_name="torchrl-awr", description=json.dumps(source)
        )
    return minari_root() / dataset_id


def check_transitions(data: TensorDictBase, path: Path) -> None:
    """One clear error for data AWR cannot use: missing keys, no transitions, numbers that are not
    float32 (the networks' and the buffer's type) or not finite, no episode end."""
    keys = ["observation", "action", "episode", *(("next", key) for key in NEXT_KEYS)]
    missing = [key for key in keys if key not in data.keys(True)]
    if missing:
        raise DatasetError(f"{path}: the dataset lacks {missing}.")
    if data.batch_size.numel() == 0:
        raise DatasetError(f"{path}: the dataset holds no transitions.")
    numbers = ("observation", "action", ("next", "observation"), ("next", "reward"))
    for key in numbers:
        if data.get(key).dtype != torch.float32:
            raise DatasetError(
                f"{path}: its {key!r} entries are {data.get(key).dtype}; a dataset holds float32 observations, "
                "actions and rewards (torchrl-awr dataset make writes them so; convert with .float())."
            )
    for key in numbers:
        bad = ~torch.isfinite(data.get(key)).reshape(data.shape[0], -1).all(-1)
        if bad.any():
            raise DatasetError(
                f"{path}: {int(bad.sum())} transitions hold NaN or inf in {key!r} (the first at index "
                f"{int(bad.nonzero()[0])})."
            )
    done = data.get(("next", "done")).reshape(-1)
    if not done.any():
        raise DatasetError(f"{path}: no transition is marked done, so no episode ends; TD(lambda) needs the ends.")
    if not done[-1]:
        raise DatasetError(f"{path}: its last transition is not done: the last episode has no end.")
