"""TrajectoryStore: time order per env in any TensorStorage, buffer-wide targets against a Python
loop, the buffer's own sampler, keys from the loss, and clear refusals."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import (
    LazyMemmapStorage,
    LazyTensorStorage,
    ListStorage,
    PrioritizedSampler,
    RandomSampler,
    ReplayBuffer,
    SamplerWithoutReplacement,
    SliceSampler,
    TensorDictMaxValueWriter,
    TensorDictReplayBuffer,
)
from torchrl.envs import RewardScaling

from torchrl_awr import AWRLoss, make_awr_actor
from torchrl_awr.store import (
    TORCHRL_CHECKED,
    ShuffledPassSampler,
    TrajectoryStore,
    batches_continue,
    check_torchrl_internals,
)
from torchrl_awr.targets import ADVANTAGE_EPS

from conftest import DEVICES, box_spec, linear_critic
from test_targets import GAMMA, LMBDA, OBS_DIM, random_steps, reference_returns, value_of


def awr_loss(obs_key: str = "observation") -> AWRLoss:
    actor = make_awr_actor(OBS_DIM, box_spec(), hidden_sizes=(4,), obs_key=obs_key)
    return AWRLoss(actor, linear_critic(obs_key=obs_key))


def make_storage(kind: str, size: int, ndim: int, tmp_path, device="cpu"):
    if kind == "memmap":
        return LazyMemmapStorage(size, ndim=ndim, scratch_dir=tmp_path / "memmap", device=device)
    return LazyTensorStorage(size, ndim=ndim, device=device)


def make_store(size, ndim=2, kind="memory", tmp_path=None, loss=None, device="cpu", **buffer_kwargs):
    buffer_kwargs.setdefault("batch_size", 4)
    rb = TensorDictReplayBuffer(storage=make_storage(kind, size, ndim, tmp_path, device), **buffer_kwargs)
    return TrajectoryStore(rb, loss or awr_loss())


# ---------------------------------------------------------------- targets over the buffer
@pytest.mark.parametrize("kind", ["memory", "memmap"])
@pytest.mark.parametrize("ndim", [1, 2])
@pytest.mark.parametrize("n_envs,capacity_t,steps,batches", [(3, 7, 3, 9), (2, 5, 4, 6), (4, 30, 5, 3)])
@pytest.mark.parametrize("device", DEVICES)
def test_buffer_targets_match_python_loop(kind, ndim, n_envs, capacity_t, steps, batches, device, tmp_path):
    """Several envs, a ring that wraps several times (cursor mid-array), terminations, truncations,
    in every storage kind and layout."""
    g = torch.Generator().manual_seed(n_envs * 100 + capacity_t)
    store = make_store(capacity_t * n_envs, ndim, kind, tmp_path, device=device)
    full = random_steps(n_envs, steps * batches, g)  # [n_envs, all steps] in time order
    for batch in full.split(steps, dim=1):
        store.extend(batch.to(device))
    total = full.shape[1]
    kept = min(total, capacity_t)
    assert len(store) == kept * n_envs

    stats = store.compute_targets(linear_critic().to(device), gamma=GAMMA, lmbda=LMBDA, standardize=False)
    chronological = store.chronological().cpu()  # [n_envs, kept], oldest first
    assert chronological.shape == (n_envs, kept)
    expected_target = torch.zeros(n_envs, kept, dtype=torch.float64)
    expected_value = torch.zeros(n_envs, kept, dtype=torch.float64)
    for env in range(n_envs):
        steps_kept = list(full[env, total - kept :].unbind(0))
        expected_target[env] = torch.tensor(reference_returns(steps_kept), dtype=torch.float64)
        expected_value[env] = torch.tensor([value_of(step["observation"]) for step in steps_kept])
        # The chronological view holds the transitions we think it does.
        torch.testing.assert_close(chronological[env]["observation"], full[env, total - kept :]["observation"])
    torch.testing.assert_close(chronological["value_target"][..., 0].double(), expected_target, rtol=1e-5, atol=1e-5)
    raw_advantage = expected_target - expected_value
    torch.testing.assert_close(chronological["advantage"][..., 0].double(), raw_advantage, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats["advantage_raw_mean"].cpu().double(), raw_advantage.mean(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        stats["advantage_raw_std"].cpu().double(), raw_advantage.std(unbiased=False), rtol=1e-5, atol=1e-5
    )

    # Standardized over the whole buffer: mean 0, std 1 (population), same ordering.
    store.compute_targets(linear_critic().to(device), gamma=GAMMA, lmbda=LMBDA, standardize=True)
    advantage = store.chronological()["advantage"][..., 0].cpu().double()
    standardized = (raw_advantage - raw_advantage.mean()) / (raw_advantage.std(unbiased=False) + ADVANTAGE_EPS)
    torch.testing.assert_close(advantage, standardized, rtol=1e-4, atol=1e-4)


def test_hand_checked_targets_of_one_short_episode():
    """One env, three steps, a termination at the end: TD(lambda) by hand."""
    store = make_store(4, ndim=1)
    obs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    batch = TensorDict(
        {
            "observation": obs,
            "action": torch.zeros(3, 2),
            "next": {
                "observation": torch.cat([obs[1:], torch.zeros(1, 3)]),
                "reward": torch.tensor([[1.0], [2.0], [3.0]]),
                "done": torch.tensor([[False], [False], [True]]),
                "terminated": torch.tensor([[False], [False], [True]]),
            },
        },
        [3],
    )
    store.extend(batch)
    store.compute_targets(linear_critic(), gamma=0.5, lmbda=0.5, standardize=False)
    # V = 0.75, -0.75, 2.25. G_2 = 3 (terminated). G_1 = 2 + 0.5 * (0.5 * 2.25 + 0.5 * 3) = 3.3125.
    # G_0 = 1 + 0.5 * (0.5 * (-0.75) + 0.5 * 3.3125) = 1.640625.
    got = store.chronological()
    assert got["value_target"][0, :, 0].tolist() == [1.640625, 3.3125, 3.0]
    assert got["advantage"][0, :, 0].tolist() == [0.890625, 4.0625, 0.75]


@pytest.mark.parametrize("ndim", [1, 2])
def test_chronological_rows_before_and_after_fill(ndim):
    store = make_store(5 * 2, ndim)
    assert store.chronological_rows().tolist() == []
    g = torch.Generator().manual_seed(0)
    store.extend(random_steps(2, 3, g))
    assert store.chronological_rows().tolist() == [0, 1, 2]
    store.extend(random_steps(2, 2, g))  # exactly full, cursor back at 0
    assert store.chronological_rows().tolist() == [0, 1, 2, 3, 4]
    store.extend(random_steps(2, 3, g))  # rows 0, 1, 2 overwritten; oldest is row 3
    assert store.chronological_rows().tolist() == [3, 4, 0, 1, 2]
    store.extend(random_steps(2, 4, g))  # rows 3, 4, 0, 1 overwritten; oldest is row 2
    assert store.chronological_rows().tolist() == [2, 3, 4, 0, 1]


@pytest.mark.parametrize("ndim", [1, 2])
def test_cut_marks_the_newest_step_of_every_env(ndim):
    """A restored buffer is not continued by the restarted envs: its newest steps become cuts."""
    g = torch.Generator().manual_seed(4)
    store = make_store(5 * 2, ndim)
    store.cut()  # empty: nothing to cut
    for _ in range(3):
        batch = random_steps(2, 3, g)
        batch["next", "done"].zero_()
        batch["next", "terminated"].zero_()
        store.extend(batch)
    store.cut()
    done = store.chronological()["next", "done"][..., 0]  # [env, time]
    assert store.chronological_rows()[-1] == 3  # 9 steps in a ring of 5: the newest is row 3
    assert done[:, -1].all() and done.sum() == 2
    assert not store.chronological()["next", "terminated"].any()  # a truncation, not a termination


def test_torchrl_internals_the_store_reads_are_there():
    """The store reads private TorchRL attributes (checked against TORCHRL_CHECKED): this fails
    loudly if a TorchRL release renames them."""
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(8, ndim=2), batch_size=2)
    check_torchrl_internals(rb)
    rb.extend(random_steps(2, 3, torch.Generator().manual_seed(0)))
    assert rb.storage._len_along_dim0 == 3 and rb.writer._cursor == 3
    assert rb.storage._storage.batch_size == (4, 2)

    class NoCursor:
        pass

    rb._writer = NoCursor()
    with pytest.raises(RuntimeError, match=f"checked against torchrl {TORCHRL_CHECKED}.*RoundRobinWriter._cursor"):
        check_torchrl_internals(rb)


# ---------------------------------------------------------------- keys
def test_keys_come_from_the_loss():
    """Renamed loss keys and an actor/critic on another observation key: the store reads and
    writes exactly those."""
    loss = awr_loss(obs_key="state")
    loss.set_keys(advantage="adv", value_target="vt")
    store = make_store(16, loss=loss)
    batch = random_steps(2, 4, torch.Generator().manual_seed(0))
    expected = reference_returns(list(batch[0].unbind(0)))
    batch.rename_key_("observation", "state")
    batch.rename_key_(("next", "observation"), ("next", "state"))
    store.extend(batch)
    store.compute_targets(loss.critic_network, gamma=GAMMA, lmbda=LMBDA, standardize=False)
    stored = store.chronological()
    assert "adv" in stored.keys() and "vt" in stored.keys() and "advantage" not in stored.keys()
    assert stored["vt"][0, :, 0].tolist() == pytest.approx(expected, abs=1e-5)


def test_a_batch_without_the_loss_keys_names_them():
    loss = awr_loss(obs_key="state")
    store = make_store(16, loss=loss)
    with pytest.raises(KeyError, match=r"no .*state.*next.*state.*set_keys"):
        store.extend(random_steps(2, 4, torch.Generator().manual_seed(0)))


# ---------------------------------------------------------------- minibatches and samplers
def test_shuffled_pass_sampler_draws_consecutive_permutations():
    sampler = ShuffledPassSampler(seed=1)
    flat = sampler.batches(50, 10, 20).reshape(-1)  # 4 passes over 50 items
    passes = flat.view(4, 50)
    assert all(sorted(p.tolist()) == list(range(50)) for p in passes)
    assert all(not torch.equal(passes[0], passes[i]) for i in range(1, 4))
    torch.testing.assert_close(ShuffledPassSampler(seed=1).batches(50, 10, 20).reshape(-1), flat)
    assert not torch.equal(ShuffledPassSampler(seed=2).batches(50, 10, 20).reshape(-1), flat)
    partial = ShuffledPassSampler(seed=0).batches(10, 3, 4).reshape(-1)  # a pass and a part
    assert sorted(partial[:10].tolist()) == list(range(10)) and len(set(partial[10:].tolist())) == 2
    state = sampler.state_dict()
    following = sampler.batches(50, 2, 5)
    sampler.load_state_dict(state)
    assert torch.equal(sampler.batches(50, 2, 5), following)


def test_shuffled_pass_sampler_serves_replay_buffer_sample():
    store = make_store(16, sampler=ShuffledPassSampler(seed=0))
    store.extend(random_steps(2, 8, torch.Generator().manual_seed(0)))
    sample = store.replay_buffer.sample()
    assert sample.shape == (4,) and "advantage" in sample.keys()


def minibatch_rows(store, keys, num_steps):
    """Every drawn minibatch as rows of its keys' values, copied out of the reused buffers."""
    return [
        [tuple(torch.cat([t[i, j].reshape(-1) for t in chunk]).tolist()) for j in range(chunk[0].shape[1])]
        for chunk in store.minibatches(keys, num_steps)
        for i in range(chunk[0].shape[0])
    ]


@pytest.mark.parametrize("ndim", [1, 2])
def test_minibatches_use_the_buffers_sampler(ndim):
    """A user's sampler draws every minibatch: one call per step, its indices gathered."""

    class Recording(SamplerWithoutReplacement):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def sample(self, storage, batch_size):
            self.calls += 1
            return super().sample(storage, batch_size)

    sampler = Recording()
    store = make_store(16, ndim, sampler=sampler)
    store.extend(random_steps(2, 8, torch.Generator().manual_seed(0)))
    keys = ["observation", "action"]
    drawn = minibatch_rows(store, keys, 20)
    assert sampler.calls == 20 and len(drawn) == 20 and all(len(batch) == 4 for batch in drawn)
    stored = {tuple(torch.cat([s[k].reshape(-1) for k in keys]).tolist()) for s in store.chronological().reshape(-1)}
    # Without replacement: every 4 minibatches of 4 cover the 16 stored transitions once.
    for first in range(0, 20, 4):
        assert sorted(row for batch in drawn[first : first + 4] for row in batch) == sorted(stored)


def test_minibatches_with_the_shuffled_pass_sampler_are_chunked_views_of_passes():
    store = make_store(16, sampler=ShuffledPassSampler(seed=0))
    store.extend(random_steps(2, 8, torch.Generator().manual_seed(0)))
    chunks = [tuple(t.clone() for t in chunk) for chunk in store.minibatches(["observation"], 40)]
    assert [chunk[0].shape[:2] for chunk in chunks] == [(16, 4), (16, 4), (8, 4)]
    expected = ShuffledPassSampler(seed=0).batches(16, 40, 4)
    flat = store._grid().reshape(-1)["observation"]
    torch.testing.assert_close(torch.cat([c[0] for c in chunks]), flat[expected])


class _PrioritizedWithoutTree(PrioritizedSampler):
    """A PrioritizedSampler that skips building its C++ sum tree (absent from some builds)."""

    def _init(self):
        pass


@pytest.mark.parametrize(
    "sampler,why",
    [
        (_PrioritizedWithoutTree(16, alpha=0.7, beta=0.9), "priorities would never be updated"),
        (SliceSampler(num_slices=2, traj_key=("collector", "traj_ids")), "sub-trajectory slices"),
    ],
)
def test_samplers_the_store_cannot_honour_are_refused(sampler, why):
    with pytest.raises(TypeError, match=f"{type(sampler).__name__}: .*{why}"):
        make_store(16, sampler=sampler)


def test_other_writers_transforms_and_storages_are_refused():
    with pytest.raises(TypeError, match="TensorDictMaxValueWriter.*round-robin"):
        make_store(16, ndim=1, writer=TensorDictMaxValueWriter(rank_key="reward"))
    with pytest.raises(TypeError, match="transform"):
        make_store(16, transform=RewardScaling(0.0, 2.0))
    with pytest.raises(TypeError, match="TensorStorage"):
        TrajectoryStore(ReplayBuffer(storage=ListStorage(10), batch_size=2), awr_loss())
    with pytest.raises(ValueError, match="ndim"):
        make_store(24, ndim=3)


def test_sizes_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="larger than the replay buffer"):
        make_store(2)
    with pytest.raises(ValueError, match="differs from the replay buffer's batch_size"):
        TrajectoryStore(TensorDictReplayBuffer(storage=LazyTensorStorage(16), batch_size=4), awr_loss(), batch_size=8)
    with pytest.raises(ValueError, match="give a batch_size"):
        TrajectoryStore(TensorDictReplayBuffer(storage=LazyTensorStorage(16)), awr_loss())
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="does not fit the replay buffer"):
        make_store(8).extend(random_steps(2, 5, g))
    with pytest.raises(ValueError, match="not a multiple of the 3 environments"):
        make_store(16, ndim=1).extend(random_steps(3, 2, g))
    store = make_store(16)
    store.extend(random_steps(2, 2, g))
    with pytest.raises(ValueError, match="has 3 environments but the store holds 2"):
        store.extend(random_steps(3, 2, g))
    with pytest.raises(ValueError, match="empty"):
        make_store(16).compute_targets(linear_critic(), gamma=GAMMA, lmbda=LMBDA)


def test_sampler_state_travels_with_the_store():
    batch = random_steps(2, 4, torch.Generator().manual_seed(0))
    store = make_store(16, ndim=1, sampler=ShuffledPassSampler(seed=3))
    store.extend(batch)
    state = store.state_dict()
    following = store._draw(3)
    other = make_store(16, ndim=1, sampler=ShuffledPassSampler(seed=9))
    other.replay_buffer.extend(store.replay_buffer[:])  # as a restored dump: no envs known yet
    other.load_state_dict(state)
    assert other.num_envs == 2 and torch.equal(other._draw(3), following)


def test_batches_continue_is_decided_by_the_collector():
    from torchrl.collectors import Collector, MultiAsyncCollector, MultiSyncCollector

    assert batches_continue(Collector.__new__(Collector))
    assert batches_continue(MultiSyncCollector.__new__(MultiSyncCollector))
    for workers, continues in ((1, True), (2, False)):
        collector = MultiAsyncCollector.__new__(MultiAsyncCollector)
        collector.num_workers = workers
        assert batches_continue(collector) is continues


def test_random_sampler_is_honoured():
    """TorchRL's default sampler (uniform, with replacement) draws the minibatches as it is."""
    store = make_store(16, sampler=RandomSampler())
    store.extend(random_steps(2, 8, torch.Generator().manual_seed(0)))
    torch.manual_seed(5)
    drawn = store._draw(3)
    torch.manual_seed(5)
    expected = [store.storage._rand_given_ndim(4) for _ in range(3)]  # (row, env) pairs
    assert torch.equal(drawn, torch.stack([row * 2 + env for row, env in expected]))
