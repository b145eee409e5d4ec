"""Datasets for offline AWR: made from random actions, a policy or a replay buffer; checked on load."""

from __future__ import annotations

import json
import os

import pytest
import torch
from tensordict import TensorDict

from torchrl_awr.commands.dataset import main
from torchrl_awr.offline_data import DatasetError, check_transitions, episode_returns, load_dataset
from torchrl_awr.recipe.reevaluate import evaluate_run
from torchrl_awr.recipe.trained import load_run

from recipe_helpers import ROOT, run_commands, run_recipe

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A small Hopper run that saved its replay buffer (4 envs x 256 steps)."""
    run_dir = tmp_path_factory.mktemp("run") / "hopper"
    run_recipe(run_dir, "checkpoint.save_buffer=true", "eval.interval=0")
    return run_dir


def assert_whole_episodes(data: TensorDict) -> None:
    """Episodes in order, each a trajectory (s_{t+1} = s'_t) ending at its only done step."""
    episode, done = data["episode"], data["next", "done"].reshape(-1)
    assert torch.equal(episode, torch.sort(episode).values) and int(episode[0]) == 0
    last_of_episode = torch.cat([episode[1:] != episode[:-1], torch.tensor([True])])
    assert torch.equal(done, last_of_episode)
    same = (data["observation"][1:] == data["next", "observation"][:-1]).all(-1)
    assert same[~done[:-1]].all()
    assert torch.equal(data["next", "truncated"], data["next", "done"] & ~data["next", "terminated"])


def test_random_episodes_are_whole_and_reproducible(tmp_path, capsys):
    for name in ("a", "b"):
        main(
            [
                "make",
                "--from",
                "random",
                "--task",
                "hopper",
                "--episodes",
                "10",
                "--envs",
                "4",
                "--out",
                str(tmp_path / name),
            ]
        )
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'a'}: 10 episodes, ")
    data, meta = load_dataset(tmp_path / "a", observation_dim=11, action_dim=3)
    again, _ = load_dataset(tmp_path / "b")
    assert torch.equal(data["observation"], again["observation"]) and torch.equal(data["action"], again["action"])
    assert int(data["episode"].max()) == 9 and meta["episodes"] == 10 and meta["transitions"] == data.shape[0]
    assert_whole_episodes(data)
    assert (data["action"].abs() <= 1).all() and data["action"].std() > 0.3  # uniform over Hopper's [-1, 1]
    returns = episode_returns(data)
    assert meta["return_mean"] == pytest.approx(returns.mean().item())
    assert meta["env_id"] == "Hopper-v5" and meta["source"] == {"from": "random", "seed": 0}


def test_policy_episodes_are_the_evaluations(trained_run, tmp_path):
    """One deterministic episode per copy from the same seed: the evaluation's episodes exactly
    (the run evaluates on eval.num_envs=2 copies)."""
    main(
        [
            "make",
            "--from",
            "policy",
            str(trained_run),
            "--episodes",
            "2",
            "--envs",
            "2",
            "--seed",
            "5",
            "--out",
            str(tmp_path / "d"),
        ]
    )
    data, meta = load_dataset(tmp_path / "d")
    assert_whole_episodes(data)
    evaluation = evaluate_run(load_run(trained_run), episodes=2, seed=5)
    assert meta["return_mean"] == pytest.approx(evaluation["return_mean"], rel=1e-5)
    assert meta["transitions"] == round(evaluation["episode_length_mean"] * 2)
    assert meta["source"]["policy"] == "deterministic" and meta["source"]["frames"] == 1024


def test_a_replay_buffer_gives_each_envs_trajectory_cut_where_it_stops(trained_run, tmp_path):
    main(["make", "--from", "buffer", str(trained_run), "--out", str(tmp_path / "d")])
    data, meta = load_dataset(tmp_path / "d")
    assert data.shape[0] == meta["transitions"] == 1024  # 4 envs x 256 steps: the whole buffer
    ends = data["next", "done"].reshape(4, 256)[:, -1]
    assert ends.all()  # every env's stored trajectory ends, truncated unless it failed there
    same = (data["observation"][1:] == data["next", "observation"][:-1]).all(-1)
    assert same[~data["next", "done"].reshape(-1)[:-1]].all()
    assert meta["source"]["from"] == "buffer"


def transitions(n: int = 4) -> TensorDict:
    done = torch.zeros(n, 1, dtype=torch.bool)
    done[-1] = True
    return TensorDict(
        {
            "observation": torch.zeros(n, 3),
            "action": torch.zeros(n, 2),
            "episode": torch.zeros(n, dtype=torch.int64),
            "next": {
                "observation": torch.zeros(n, 3),
                "reward": torch.zeros(n, 1),
                "done": done,
                "terminated": done.clone(),
                "truncated": torch.zeros(n, 1, dtype=torch.bool),
            },
        },
        [n],
    )


def test_data_awr_cannot_use_is_named(tmp_path):
    check_transitions(transitions(), tmp_path)
    no_end = transitions()
    no_end["next", "done"][:] = False
    with pytest.raises(DatasetError, match="no transition is marked done"):
        check_transitions(no_end, tmp_path)
    open_end = transitions()
    open_end["next", "done"][-1], open_end["next", "done"][0] = False, True
    with pytest.raises(DatasetError, match="its last transition is not done"):
        check_transitions(open_end, tmp_path)
    nan = transitions()
    nan["next", "reward"][2] = float("nan")
    with pytest.raises(
        DatasetError, match=r"1 transitions hold NaN or inf in \('next', 'reward'\) \(the first at index 2\)"
    ):
        check_transitions(nan, tmp_path)
    with pytest.raises(DatasetError, match=r"lacks \['action'\]"):
        check_transitions(transitions().exclude("action"), tmp_path)


def test_a_dataset_for_another_task_or_none_at_all_is_named(tmp_path):
    main(["make", "--from", "random", "--task", "inverted_pendulum", "--episodes", "2", "--out", str(tmp_path / "d")])
    with pytest.raises(DatasetError, match="its observations have 4 dimensions; the task's have 11"):
        load_dataset(tmp_path / "d", observation_dim=11)
    with pytest.raises(DatasetError, match=f"No dataset at {tmp_path}: it needs dataset.json"):
        load_dataset(tmp_path)
    assert json.loads((tmp_path / "d" / "dataset.json").read_text())["episodes"] == 2


def test_bad_commands_fail_with_one_line(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cases = {
        "--from random needs --task": ["--from", "random", "--out", str(tmp_path / "d")],
        "--from policy needs a run": ["--from", "policy", "--out", str(tmp_path / "d")],
        "exists and is not an empty directory": [
            "--from",
            "random",
            "--task",
            "hopper",
            "--out",
            str(tmp_path / "full"),
        ],
        "say where the dataset goes: --out DIR, --minari ID, or both": ["--from", "random", "--task", "hopper"],
        "No checkpoint at": ["--from", "policy", str(tmp_path), "--out", str(tmp_path / "d")],
    }
    commands = [(["-m", "torchrl_awr", "dataset", "make", *args], ROOT, dict(os.environ)) for args in cases.values()]
    for message, result in zip(cases, run_commands(commands)):
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.startswith("error: ") and message in result.stderr and "Traceback" not in result.stderr
