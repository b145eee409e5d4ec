"""AWRTrainer with user-supplied TorchRL components, and its minibatch schedule."""

from __future__ import annotations

import pytest
import torch
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from torchrl_awr import AWRLoss, ObservationNormalizer, make_awr_actor, make_awr_critic
from torchrl_awr.envs import make_env
from torchrl_awr.evaluation import Evaluator
from torchrl_awr.store import ShuffledPassSampler
from torchrl_awr.targets import td_lambda_returns
from torchrl_awr.trainer import AWRTrainer, AWRTrainerConfig, PhaseTimer
from torchrl_awr.updates import UpdateStep

ENV = "InvertedPendulum-v5"


# ---------------------------------------------------------------- Python API
def build(num_envs=2, frames_per_batch=64, buffer_size=256, ndim=2, batch_size=32, seed=0, **config):
    """Every component made by hand, as a user of the library would."""
    torch.manual_seed(seed)
    env = make_env(ENV, num_envs=num_envs, seed=seed)
    obs_dim = env.observation_spec["observation"].shape[-1]
    normalizer = ObservationNormalizer(obs_dim, max_samples=10_000)
    actor = make_awr_actor(obs_dim, env.action_spec_unbatched, normalizer=normalizer, hidden_sizes=(16,))
    critic = make_awr_critic(obs_dim, normalizer=normalizer, hidden_sizes=(16,))
    collector = Collector(
        env, actor, frames_per_batch=frames_per_batch, total_frames=-1, auto_register_policy_transforms=False
    )
    replay_buffer = TensorDictReplayBuffer(
        storage=LazyTensorStorage(buffer_size, ndim=ndim), sampler=ShuffledPassSampler(seed=seed)
    )
    loss = AWRLoss(actor, critic)
    settings = dict(
        total_frames=4 * frames_per_batch,
        critic_steps=64,
        actor_steps=128,
        batch_size=batch_size,
        eval_interval=0,
        checkpoint_interval=0,
    )
    settings.update(config)
    return AWRTrainer(
        collector=collector,
        replay_buffer=replay_buffer,
        loss_module=loss,
        actor_optimizer=torch.optim.Adam(actor.parameters(), lr=1e-3),
        critic_optimizer=torch.optim.Adam(critic.parameters(), lr=1e-3),
        config=AWRTrainerConfig(**settings),
        normalizer=normalizer,
        progress=False,
    )


def parameters(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_user_supplied_components_train():
    trainer = build()
    actor, critic = trainer.loss_module.actor_network, trainer.loss_module.critic_network
    actor_before, critic_before = parameters(actor), parameters(critic)
    try:
        history = trainer.train()
    finally:
        trainer.collector.shutdown()
    assert trainer.frames == 256 and trainer.iteration == 4
    assert len(history) == 4
    assert [m["frames"] for m in history] == [64, 128, 192, 256]
    # 64 frames per batch against a 2048 reference: ceil(64 * 64 / 2048) = 2 critic steps.
    assert history[0]["critic_steps"] == 2 and history[0]["actor_steps"] == 4
    assert len(trainer.replay_buffer) == 256
    assert trainer.normalizer.count.item() == 256
    for metrics in history:
        for key in ("loss_actor", "loss_critic", "weight_mean", "advantage_raw_std"):
            assert torch.isfinite(torch.tensor(metrics[key])), key
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, parameters(actor)))
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, parameters(critic)))
    # The buffer carries the targets of the last iteration, standardized over the buffer.
    advantage = trainer.replay_buffer.storage._storage["advantage"]
    assert abs(advantage.mean().item()) < 1e-4
    assert advantage.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-3)


def test_compiled_updates_match_eager_and_compile_once():
    """The compiled path (guards checked on each phase's first step only) trains as eager does."""
    from torch._dynamo.utils import counters

    def train(compile_updates: bool, total_frames: int):
        trainer = build(total_frames=total_frames, compile=compile_updates)
        try:
            history = trainer.train()
        finally:
            trainer.collector.shutdown()
        return trainer, history

    torch._dynamo.reset()
    eager, eager_history = train(False, 128)
    compiled = build(total_frames=128, compile=True)
    try:
        compiled_history = compiled.train()
        for got, want in zip(parameters(compiled.loss_module), parameters(eager.loss_module)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        for key in ("loss_actor", "loss_critic", "weight_ess", "explained_variance"):
            assert compiled_history[-1][key] == pytest.approx(eager_history[-1][key], rel=1e-3, abs=1e-5)
        # Two graphs (critic, actor) serve every later iteration: nothing recompiles.
        graphs = counters["stats"]["unique_graphs"]
        compiled.config.total_frames = 256
        history = compiled.train()
    finally:
        compiled.collector.shutdown()
    assert compiled.frames == 256 and counters["stats"]["unique_graphs"] == graphs
    assert all(torch.isfinite(torch.tensor(m["loss_actor"])) for m in history)


def test_skipping_guards_within_a_phase_changes_nothing(monkeypatch):
    """Guards checked on every step or only on each phase's first: bitwise the same training."""
    import contextlib

    def train(check_every_step: bool):
        trainer = build(total_frames=192, compile=True)
        if check_every_step:
            monkeypatch.setattr(UpdateStep, "trusted_guards", lambda self: contextlib.nullcontext())
        try:
            trainer.train()
        finally:
            trainer.collector.shutdown()
        return parameters(trainer.loss_module)

    for got, want in zip(train(False), train(True)):
        assert torch.equal(got, want)


def test_minibatches_are_one_tensor_per_key_from_the_buffer():
    trainer = build()
    try:
        trainer._iterate(next(iter(trainer.collector)), PhaseTimer())
        keys = trainer._actor_step.keys
        # Each chunk is gathered into reused buffers: copy it before asking for the next.
        chunks = [tuple(t.clone() for t in chunk) for chunk in trainer.store.minibatches(keys, 40)]
    finally:
        trainer.collector.shutdown()
    assert [chunk[0].shape[:2] for chunk in chunks] == [(16, 32), (16, 32), (8, 32)]
    minibatches = [step for chunk in chunks for step in zip(*(t.unbind(0) for t in chunk))]
    assert len(minibatches) == 40
    stored = trainer.store.chronological().reshape(-1)
    assert keys == ["observation", "action", "advantage"] and stored.shape[0] == 64

    def rows(*columns):  # each sample's keys, joined, so a misaligned column would not match
        return {
            tuple(torch.cat([c.reshape(c.shape[0], -1) for c in columns], -1)[i].tolist())
            for i in range(columns[0].shape[0])
        }

    stored_rows = rows(*(stored.get(key) for key in keys))
    for tensors in minibatches:
        assert [t.shape[0] for t in tensors] == [32] * len(keys)
        assert rows(*tensors) <= stored_rows
    # Shuffled passes: every two minibatches of 32 cover the 64 stored steps exactly once.
    for first in range(0, 40, 2):
        pair = [torch.cat(column) for column in zip(minibatches[first], minibatches[first + 1])]
        assert rows(*pair) == stored_rows


@pytest.mark.parametrize("num_envs", [1, 2])
def test_ndim1_storage_trains(num_envs):
    """A flat storage holds the [time, env] grid time-major, for one env or several."""
    trainer = build(num_envs=num_envs, frames_per_batch=32, buffer_size=64, ndim=1, batch_size=16)
    try:
        trainer.train()
    finally:
        trainer.collector.shutdown()
    assert trainer.frames == 128 and len(trainer.replay_buffer) == 64
    data = trainer.store.chronological()  # [num_envs, T]: each env's steps continue
    continues = ~data["next", "done"][:, :-1, 0]
    same = (data["observation"][:, 1:] == data["next", "observation"][:, :-1]).all(-1)
    assert (same | ~continues).all()


def test_evaluator_runs_with_trainer():
    trainer = build(total_frames=128, eval_interval=1)
    actor = trainer.loss_module.actor_network
    trainer.evaluator = Evaluator(make_env(ENV, num_envs=2, seed=5), actor, num_episodes=3, max_episode_steps=50)
    try:
        history = trainer.train()
    finally:
        trainer.collector.shutdown()
    assert all("eval/return_mean" in m for m in history)
    assert 1 <= history[-1]["eval/episode_length_mean"] <= 50
    assert trainer.last_eval == {k: v for k, v in history[-1].items() if k.startswith("eval/")}


def test_checkpoint_round_trip(tmp_path):
    trainer = build(total_frames=128)
    try:
        trainer.train()
        trainer.save(tmp_path / "checkpoint.pt")
    finally:
        trainer.collector.shutdown()
    restored = build(seed=1)
    try:
        restored.load(tmp_path / "checkpoint.pt")
        assert (restored.frames, restored.iteration) == (128, 2)
        for a, b in zip(parameters(trainer.loss_module), parameters(restored.loss_module)):
            torch.testing.assert_close(a, b)
        assert restored.normalizer.count.item() == 128
        assert torch.equal(
            restored.replay_buffer.sampler.generator.get_state(), trainer.replay_buffer.sampler.generator.get_state()
        )
    finally:
        restored.collector.shutdown()


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="total_frames=0"):
        AWRTrainerConfig(total_frames=0).validate()
    with pytest.raises(ValueError, match=r"collector.total_frames=-5 \(must be > 0\), train.actor_steps='x'"):
        AWRTrainerConfig(total_frames=-5, actor_steps="x").validate(
            names={"total_frames": "collector.total_frames", "actor_steps": "train.actor_steps"}
        )
    with pytest.raises(ValueError, match="larger than the replay buffer"):
        build(buffer_size=16, batch_size=32)


class _RecordsExploration(torch.nn.Module):
    """Wraps a policy and records the exploration type it is called under."""

    def __init__(self, policy):
        super().__init__()
        self.policy, self.seen = policy, set()

    def forward(self, tensordict):
        from torchrl.envs.utils import exploration_type

        self.seen.add(exploration_type())
        return self.policy(tensordict)


@pytest.mark.parametrize("mode", ["DETERMINISTIC", "RANDOM"])
def test_evaluator_policy_mode_and_time_limit_fraction(mode):
    from torchrl.envs.utils import ExplorationType

    env = make_env(ENV, num_envs=4, seed=0, env_kwargs={"max_episode_steps": 5})
    obs_dim = env.observation_spec["observation"].shape[-1]
    # A small std: the sampled actions stay close to the mean, so both modes balance.
    actor = make_awr_actor(obs_dim, env.action_spec_unbatched, hidden_sizes=(8,), action_std=0.05)
    policy = _RecordsExploration(actor)
    evaluator = Evaluator(env, policy, num_episodes=6, max_episode_steps=5, exploration_type=ExplorationType[mode])
    result = evaluator()
    env.close()
    assert policy.seen == {ExplorationType[mode]}
    # InvertedPendulum pays 1 per step; a fresh policy balances for 5 steps (with or without
    # sampling): every episode reaches the time limit with return 5.
    assert result["eval/return_mean"] == pytest.approx(5.0)
    assert result["eval/time_limit_fraction"] == 1.0


def test_evaluator_episodes_sum_info_terms_and_keep_the_state_each_ended_in():
    """A constant full push topples InvertedPendulum: every episode terminates (the pole past
    0.2 rad) before the time limit, having earned reward_survive = 1 on each step but the last
    (v5 pays nothing on the step that terminates)."""
    from tensordict.nn import TensorDictModule

    env = make_env(ENV, num_envs=2, seed=0, keep_info=True)
    push = TensorDictModule(
        lambda observation: torch.full((*observation.shape[:-1], 1), 3.0), ["observation"], ["action"]
    )
    evaluator = Evaluator(
        env, push, num_episodes=3, max_episode_steps=100, sum_keys=("reward_survive",), final_keys=("observation",)
    )
    episodes = evaluator.episodes()
    metrics = evaluator()
    env.close()
    assert episodes.batch_size == torch.Size([3]) and episodes["observation"].shape == (3, 4)
    assert (episodes["length"] < 100).all() and (episodes["observation"][:, 1].abs() > 0.2).all()
    assert torch.equal(episodes["reward_survive"], episodes["length"].float() - 1)
    assert torch.equal(episodes["return"], episodes["reward_survive"])
    assert metrics["eval/reward_survive_mean"] == metrics["eval/episode_length_mean"] - 1


def test_a_torchrl_users_pipeline_with_renamed_keys_and_own_buffer():
    """As a TorchRL user builds it: a GymEnv whose observation is renamed, actor and critic on
    "state", the loss's target keys renamed, a plain buffer with TorchRL's default sampler, and
    no other argument: every key comes from the loss and its networks."""
    from torchrl.envs import Compose, DoubleToFloat, GymEnv, RenameTransform, TransformedEnv

    env = TransformedEnv(GymEnv(ENV), Compose(DoubleToFloat(), RenameTransform(["observation"], ["state"])))
    obs_dim = env.observation_spec["state"].shape[-1]
    actor = make_awr_actor(obs_dim, env.action_spec, hidden_sizes=(16,), obs_key="state")
    critic = make_awr_critic(obs_dim, hidden_sizes=(16,), obs_key="state")
    loss = AWRLoss(actor, critic)
    loss.set_keys(advantage="adv", value_target="vt")
    collector = Collector(env, actor, frames_per_batch=64, total_frames=-1, auto_register_policy_transforms=False)
    trainer = AWRTrainer(
        collector=collector,
        replay_buffer=TensorDictReplayBuffer(storage=LazyTensorStorage(256), batch_size=32),
        loss_module=loss,
        actor_optimizer=torch.optim.Adam(actor.parameters(), lr=1e-3),
        critic_optimizer=torch.optim.Adam(critic.parameters(), lr=1e-3),
        config=AWRTrainerConfig(total_frames=192, critic_steps=64, actor_steps=128, eval_interval=0),
        progress=False,
    )
    actor_before = parameters(actor)
    try:
        history = trainer.train()
    finally:
        collector.shutdown()
    assert trainer.frames == 192 and [m["actor_steps"] for m in history] == [4, 4, 4]
    assert all(
        torch.isfinite(torch.tensor(m["loss_actor"])) and torch.isfinite(torch.tensor(m["loss_critic"]))
        for m in history
    )
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, parameters(actor)))
    stored = trainer.store.chronological()
    assert {"state", "adv", "vt"} <= set(stored.keys()) and "advantage" not in stored.keys()
    assert abs(stored["adv"].mean().item()) < 1e-4  # standardized over the buffer


def test_discount_and_lambda_come_from_the_losss_value_estimator():
    trainer = build()
    try:
        assert trainer.loss_module.td_lambda_parameters() == pytest.approx((0.99, 0.95))
        trainer.loss_module.make_value_estimator("td_lambda", gamma=0.5, lmbda=0.25)
        trainer._iterate(next(iter(trainer.collector)), PhaseTimer())
        data = trainer.store.chronological()
        with torch.no_grad():
            value = trainer.loss_module.critic_network(data.select("observation").clone())["state_value"]
            next_value = trainer.loss_module.critic_network(data["next"].select("observation").clone())["state_value"]
        expected = td_lambda_returns(
            data["next", "reward"], next_value, data["next", "done"], data["next", "terminated"], gamma=0.5, lmbda=0.25
        )
        raw = expected - value
        torch.testing.assert_close(
            data["advantage"], (raw - raw.mean()) / (raw.std(unbiased=False) + 1e-5), rtol=1e-4, atol=1e-4
        )
    finally:
        trainer.collector.shutdown()
