"""Offline AWR: a dataset as the trainer's data source, the offline recipe, Minari datasets, and
offline-to-online."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from torchrl_awr import AWRLoss, ObservationNormalizer, make_awr_actor, make_awr_critic
from torchrl_awr.checkpoint import CheckpointError
from torchrl_awr.commands.dataset import main
from torchrl_awr.envs import make_env
from torchrl_awr.offline_data import DatasetError, load_dataset, load_minari, load_training_data, write_dataset
from torchrl_awr.recipe.dataset_makers import dataset_environment, from_random
from torchrl_awr.recipe.factories import make_trainer
from torchrl_awr.recipe.training import start_from
from torchrl_awr.store import ShuffledPassSampler, TrajectoryStore
from torchrl_awr.trainer import AWRTrainer, AWRTrainerConfig

from recipe_helpers import (
    OFFLINE_RECIPE,
    SMALL,
    compose_config,
    read_csv,
    run_command,
    run_module,
    run_recipe,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

OFFLINE_RECIPE_SMALL = [o for o in SMALL if not o.startswith(("collector.", "env.num_envs", "buffer."))]


def episodes(lengths: list[int], obs_dim: int = 3, act_dim: int = 1, terminated_last: bool = True) -> TensorDict:
    """Episodes of the given lengths, episode after episode; observation = [t, episode, 1, ...],
    reward 1 per step; each episode ends terminated (``terminated_last``) or truncated."""
    parts = []
    for index, length in enumerate(lengths):
        t = torch.arange(length, dtype=torch.float32)
        obs = torch.stack([t, torch.full_like(t, index), *([torch.ones_like(t)] * (obs_dim - 2))], -1)
        done = torch.zeros(length, 1, dtype=torch.bool)
        done[-1] = True
        terminated = done & terminated_last
        parts.append(
            TensorDict(
                {
                    "observation": obs,
                    "action": torch.full((length, act_dim), 0.1 * index),
                    "episode": torch.full((length,), index),
                    "next": {
                        "observation": obs + torch.tensor([1.0] + [0.0] * (obs_dim - 1)),
                        "reward": torch.ones(length, 1),
                        "done": done,
                        "terminated": terminated,
                        "truncated": done & ~terminated,
                    },
                },
                [length],
            )
        )
    return torch.cat(parts)


# ---------------------------------------------------------------- the normaliser
def test_the_normaliser_fits_a_whole_dataset_and_then_updates_to_its_cap():
    normalizer = ObservationNormalizer(1, max_samples=6)
    normalizer.update(torch.tensor([[100.0]]))
    normalizer.fit(torch.tensor([[1.0], [3.0], [5.0], [7.0]]))  # replaces what came before
    assert normalizer.count.item() == 4
    assert normalizer.loc.item() == 4.0 and normalizer.scale.item() == pytest.approx(math.sqrt(5.0))
    normalizer.update(torch.tensor([[4.0], [4.0], [1000.0]]))  # only 2 more fit under the cap of 6
    assert normalizer.count.item() == 6 and normalizer.frozen
    assert normalizer.loc.item() == 4.0 and normalizer.scale.item() == pytest.approx(math.sqrt(20 / 6))
    big = ObservationNormalizer(1, max_samples=2)
    big.fit(torch.arange(10.0).reshape(-1, 1))  # all of them, whatever max_samples
    assert big.count.item() == 10 and big.loc.item() == 4.5


# ---------------------------------------------------------------- the store
def store_of(size: int, obs_dim: int = 3) -> TrajectoryStore:
    normalizer = ObservationNormalizer(obs_dim)
    actor = make_awr_actor(obs_dim, make_env("InvertedPendulum-v5").action_spec, normalizer=normalizer)
    critic = make_awr_critic(obs_dim, normalizer=normalizer)
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(size, ndim=2), batch_size=2)
    return TrajectoryStore(buffer, AWRLoss(actor, critic))


def test_a_dataset_enters_the_store_as_trajectories_that_end_where_it_is_cut():
    data = episodes([3, 7])  # 10 transitions
    store = store_of(8)
    assert store.extend_episodes(data, num_envs=2) == 8  # the newest 8, as 2 runs of 4
    grid = store.chronological()  # [2 envs, 4 steps]
    # env 0: the end of episode 0 (t=2), then episode 1's t=0..2; env 1: episode 1's t=3..6
    assert torch.equal(grid["observation"][..., 1], torch.tensor([[0.0, 1, 1, 1], [1, 1, 1, 1]]))
    assert torch.equal(grid["observation"][..., 0], torch.tensor([[2.0, 0, 1, 2], [3, 4, 5, 6]]))
    done = grid["next", "done"].squeeze(-1)
    assert torch.equal(done, torch.tensor([[True, False, False, True], [False, False, False, True]]))
    terminated = grid["next", "terminated"].squeeze(-1)
    assert torch.equal(terminated, torch.tensor([[True, False, False, False], [False, False, False, True]]))
    assert "episode" not in grid.keys() and "truncated" not in grid["next"].keys()
    assert not data["next", "done"][5].any()  # the dataset itself is not marked
    with pytest.raises(ValueError, match="10 transitions cannot be laid out as 16 trajectories in a buffer of 8"):
        store_of(8).extend_episodes(data, num_envs=16)


# ---------------------------------------------------------------- the trainer
def offline_trainer(data: TensorDict, **config) -> AWRTrainer:
    torch.manual_seed(0)
    obs_dim = data["observation"].shape[-1]
    normalizer = ObservationNormalizer(obs_dim, max_samples=2)
    actor = make_awr_actor(obs_dim, make_env("InvertedPendulum-v5").action_spec, normalizer=normalizer)
    critic = make_awr_critic(obs_dim, normalizer=normalizer, hidden_sizes=(8,))
    loss = AWRLoss(actor, critic).make_value_estimator(gamma=0.5, lmbda=0.5)
    settings = dict(total_iterations=3, critic_steps=2, actor_steps=4, batch_size=4, eval_interval=0)
    settings.update(config)
    return AWRTrainer(
        dataset=data,
        replay_buffer=TensorDictReplayBuffer(
            storage=LazyTensorStorage(data.shape[0], ndim=2), sampler=ShuffledPassSampler(0)
        ),
        loss_module=loss,
        actor_optimizer=torch.optim.SGD(actor.parameters(), lr=1e-3),
        critic_optimizer=torch.optim.SGD(critic.parameters(), lr=0.0),
        config=AWRTrainerConfig(**settings),
        normalizer=normalizer,
        progress=False,
    )


def test_offline_iterations_run_the_configured_updates_on_the_whole_dataset():
    data = episodes([3, 2])
    trainer = offline_trainer(data)
    for parameter in trainer.loss_module.critic_network.parameters():
        parameter.data.zero_()  # V = 0, kept by the critic's lr of 0
    actor_before = [p.clone() for p in trainer.loss_module.actor_network.parameters()]
    history = trainer.train()
    assert [row["iteration"] for row in history] == [1, 2, 3] and trainer.progress() == 3 and trainer.frames == 0
    assert all(row["critic_steps"] == 2 and row["actor_steps"] == 4 and row["buffer_size"] == 5 for row in history)
    # The normaliser holds all five observations (max_samples=2 does not cut a fitted dataset).
    assert trainer.normalizer.count.item() == 5
    assert torch.allclose(trainer.normalizer.loc, data["observation"].mean(0).double().float())
    # TD(lambda) with V = 0, gamma = lambda = 0.5 inside each terminated episode: G = 1 + 0.25 G'.
    targets = trainer.store.chronological()["value_target"].reshape(-1)
    assert torch.allclose(targets, torch.tensor([1 + 0.25 * 1.25, 1.25, 1.0, 1.25, 1.0]))
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, trainer.loss_module.actor_network.parameters()))


def test_an_offline_trainer_resumes_on_its_dataset_only(tmp_path):
    data = episodes([3, 2])
    first = offline_trainer(data, total_iterations=2)
    first.train()
    first.save(tmp_path / "checkpoint.pt")
    resumed = offline_trainer(data, total_iterations=3)
    resumed.load(tmp_path / "checkpoint.pt")
    assert resumed.iteration == 2 and len(resumed.store) == 0  # refilled from the dataset by train()
    resumed.train()
    assert resumed.iteration == 3 and len(resumed.store) == 5
    assert resumed.normalizer.count.item() == 5  # the checkpoint's, not refitted
    other = episodes([3, 3])
    with pytest.raises(
        CheckpointError, match="trained on a dataset of 5 transitions .*this trainer has a dataset of 6"
    ):
        offline_trainer(other).load(tmp_path / "checkpoint.pt")


def test_a_trainer_takes_a_collector_or_a_dataset():
    data = episodes([3, 2])
    with pytest.raises(ValueError, match="set it"):
        offline_trainer(data, total_iterations=None)
    trainer = offline_trainer(data)
    parts = dict(
        replay_buffer=trainer.replay_buffer,
        loss_module=trainer.loss_module,
        actor_optimizer=trainer.actor_optimizer,
        critic_optimizer=trainer.critic_optimizer,
    )
    with pytest.raises(ValueError, match="give exactly one"):
        AWRTrainer(**parts)


# ---------------------------------------------------------------- the recipe
@pytest.fixture(scope="module")
def hopper_data(tmp_path_factory):
    """40 episodes of random actions on Hopper, as a dataset directory."""
    directory = tmp_path_factory.mktemp("data") / "hopper-random"
    cfg, data, source = from_random("hopper", 40, envs=4, seed=0)
    write_dataset(data, directory, **dataset_environment(cfg), source=source)
    return directory


def test_the_offline_command_trains_resumes_and_then_goes_online(hopper_data, tmp_path):
    """``offline_awr.py`` on a dataset, resumed for two more iterations, then ``mujoco_awr.py``
    from its networks with its dataset in the buffer."""
    small = [*OFFLINE_RECIPE_SMALL, f"dataset={hopper_data}", "offline.iterations=2"]
    first = run_command(tmp_path, "output_dir=off", *small, small=False, script=OFFLINE_RECIPE)
    assert first.returncode == 0, first.stderr[-2000:]
    size = load_dataset(hopper_data)[1]["transitions"]
    assert f"dataset    {hopper_data} ({size:,} transitions), offline" in first.stdout
    assert "Done: 2 iterations" in first.stdout
    assert re.search(r"^iteration 2 of 2: eval -?\d+\.\d ± \d+\.\d \(\d+\.\d min\)$", first.stdout, re.M)
    resumed = run_command(
        tmp_path, "resume=off/checkpoint.pt", "offline.iterations=4", small=False, script=OFFLINE_RECIPE
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "(resumed at 2)" in resumed.stdout and "Done: 4 iterations" in resumed.stdout
    assert [step for step, _ in read_csv(tmp_path / "off", "iteration")] == [1, 2, 3, 4]
    assert [step for step, _ in read_csv(tmp_path / "off", "eval/return_mean")] == [2, 4]
    evaluated = run_module("torchrl_awr", "evaluate", str(tmp_path / "off"), "--episodes", "2")
    assert evaluated.returncode == 0 and evaluated.stdout.startswith("Hopper-v5 at 4 offline iterations, 2 ")

    online = run_command(tmp_path, "output_dir=on", "init_from=off", "init_dataset=true", "collector.total_frames=256")
    assert online.returncode == 0, online.stderr[-2000:]
    assert "(new run, from the networks of off and its dataset)" in online.stdout
    # 4 envs: the dataset's newest transitions rounded down to a multiple of 4, then one batch.
    assert read_csv(tmp_path / "on", "buffer_size") == [(256.0, float(size // 4 * 4 + 256))]


def test_an_online_run_starts_from_the_offline_networks(hopper_data, tmp_path):
    offline = run_recipe(tmp_path / "off", f"dataset={hopper_data}", "offline.iterations=1", "eval.interval=0")
    cfg = compose_config(f"init_from={tmp_path / 'off'}")
    trainer = make_trainer(cfg, tmp_path / "on", torch.device("cpu"))
    try:
        start_from(cfg, trainer)
        mine, theirs = trainer.loss_module.state_dict(), offline.loss_module.state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
        assert trainer.frames == 0 and len(trainer.store) == 0  # no dataset without init_dataset
        assert trainer.normalizer.count.item() == offline.dataset.shape[0]
    finally:
        trainer.shutdown()
    online_source = compose_config(f"init_from={tmp_path / 'off'}", "init_dataset=true")
    online_source.init_from = str(tmp_path / "on_src")
    run_recipe(tmp_path / "on_src", "collector.total_frames=256", "eval.interval=0")
    trainer = make_trainer(online_source, tmp_path / "on2", torch.device("cpu"))
    try:
        with pytest.raises(ValueError, match="names no dataset; the run at .*on_src learned online"):
            start_from(online_source, trainer)
    finally:
        trainer.shutdown()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["init_dataset=true"], "init_dataset=true puts the dataset of the init_from run in the buffer"),
        (["dataset=DATA", "resume_buffer=true"], "an offline run .* saves no buffer"),
        (["dataset=DATA", "init_from=x", "init_dataset=true"], "init_dataset=true is for online runs"),
        (["task=walker2d", "dataset=DATA"], "its observations have 11 dimensions; the task's have 17"),
        (["dataset=awr/nowhere-v0"], r"no Minari dataset 'awr/nowhere-v0' in the local Minari store \(looked for "),
        (["dataset=DATA", "init_from=nowhere"], "No checkpoint at nowhere"),
    ],
)
def test_bad_offline_settings_fail_before_training(hopper_data, tmp_path, monkeypatch, overrides, message):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    overrides = [o.replace("DATA", str(hopper_data)) for o in overrides]
    with pytest.raises((ValueError, CheckpointError), match=message):
        run_recipe(tmp_path / "run", *overrides)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# ---------------------------------------------------------------- Minari
def test_a_minari_dataset_round_trips_through_torchrls_loader(hopper_data, tmp_path, monkeypatch, capsys):
    """``make --minari`` writes the same episodes into the local Minari store that TorchRL's
    ``MinariExperienceReplay`` then reads for ``dataset=<id>``, value for value; neither says
    more than its own line (Minari's advice to name an author, the loader's per-episode bar)."""
    pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(
            ["make", "--from", "random", "--task", "hopper", "--episodes", "40", "--envs", "4", "--minari", "awr/h-v0"]
        )
    assert not [w for w in caught if "is set to None" in str(w.message)]
    ours, _ = load_dataset(hopper_data)
    capsys.readouterr()
    theirs, meta = load_minari("awr/h-v0")
    assert capsys.readouterr() == ("", "")
    assert meta["env_id"] == "Hopper-v5" and meta["episodes"] == 40
    for key in ours.keys(True, True):
        assert torch.equal(ours[key], theirs[key]), key
    loaded, _ = load_training_data("awr/h-v0", env_id="Hopper-v5", observation_dim=11, action_dim=3)
    assert loaded.shape == ours.shape
    with pytest.raises(DatasetError, match="was recorded on Hopper-v5; this task is Walker2d-v5"):
        load_training_data("awr/h-v0", env_id="Walker2d-v5", observation_dim=11, action_dim=3)
    trainer = run_recipe(tmp_path / "run", "dataset=awr/h-v0", "offline.iterations=2")
    assert trainer.iteration == 2 and trainer.dataset.shape == ours.shape
    assert OmegaConf.load(tmp_path / "run" / "config.yaml").dataset == "awr/h-v0"
