"""Every task preset completes a short run; its settings are the original's or named departures."""

import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torchrl.modules import IndependentNormal, OneHotCategorical

from torchrl_awr import make_awr_actor
from torchrl_awr.recipe import compose as recipe_compose
from torchrl_awr.recipe import factories
from torchrl_awr.recipe.compose import CONFIG_DIR as RECIPE_CONFIG_DIR

from conftest import box_spec
from recipe_helpers import SMALL, compose_config, read_csv, run_recipe

CONFIG_DIR = RECIPE_CONFIG_DIR / "task"
PRESETS = sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))
MODERN_FILES = (RECIPE_CONFIG_DIR / "preset" / "modern.yaml", RECIPE_CONFIG_DIR / "preset_task" / "modern_{task}.yaml")

# The original's per-task settings (actor lr, action std, normaliser samples).
ORIGINAL = {
    "halfcheetah": ("HalfCheetah-v5", 5e-5, 0.4, 300_000),
    "hopper": ("Hopper-v5", 1e-4, 0.4, 300_000),
    "walker2d": ("Walker2d-v5", 2.5e-5, 0.4, 300_000),
    "ant": ("Ant-v5", 5e-5, 0.2, 300_000),
    "humanoid": ("Humanoid-v5", 1e-5, 0.4, 300_000),
    "lunarlander": ("LunarLander-v3", 5e-4, 0.4, 100_000),
}

# Departures from the original's fixed std: (std_end, anneal_start, anneal_frames).
NARROWING_STD = {"hopper": (0.2, 500_000, 500_000), "halfcheetah": (0.2, 0, 1_000_000)}


def test_presets_cover_the_original_benchmark():
    assert set(ORIGINAL) <= set(PRESETS)
    for task, (env_name, actor_lr, action_std, normalizer_samples) in ORIGINAL.items():
        cfg = compose_config(f"task={task}")
        assert cfg.env.name == env_name
        assert cfg.optim.actor_lr == pytest.approx(actor_lr)
        assert cfg.model.normalizer_samples == normalizer_samples
        if task == "lunarlander":
            assert cfg.model.distribution == "categorical"
            assert cfg.loss.logits_l2_coeff == pytest.approx(0.001)
        else:
            assert cfg.model.action_std == pytest.approx(action_std)
            if task not in NARROWING_STD:
                assert cfg.model.action_std_end is None  # fixed, as the original's
            assert cfg.loss.action_bound_coeff == pytest.approx(10.0)


def test_some_presets_narrow_the_std_the_others_keep_it_fixed():
    for task in PRESETS:
        model = compose_config(f"task={task}").model
        schedule = (model.action_std_end, model.action_std_anneal_start, model.action_std_anneal_frames)
        assert schedule == NARROWING_STD.get(task, (None, 0, 1_000_000)), task
    restored = compose_config("task=hopper", "model.action_std_end=null")
    assert restored.model.action_std_end is None
    assert factories.make_std_schedule(restored, None) is None
    hopper_actor = make_awr_actor(11, box_spec(low=(-1.0,) * 3, high=(1.0,) * 3))
    schedule = factories.make_std_schedule(compose_config("task=hopper"), hopper_actor)
    assert [schedule.std_at(f) for f in (0, 500_000, 750_000, 1_000_000, 2_000_000)] == pytest.approx(
        [0.4, 0.4, 0.3, 0.2, 0.2]
    )


def test_hopper_alone_departs_from_the_original_discount():
    for task in PRESETS:
        expected = 0.9925 if task == "hopper" else 0.99
        assert compose_config(f"task={task}").loss.gamma == pytest.approx(expected), task
    assert compose_config("task=hopper", "loss.gamma=0.99").loss.gamma == pytest.approx(0.99)
    assert compose_config("task=walker2d", "loss.gamma=0.995").loss.gamma == pytest.approx(0.995)


def test_default_task_is_halfcheetah_with_original_numbers():
    with initialize_config_dir(config_dir=str(CONFIG_DIR.parent), version_base="1.3"):
        cfg = compose(config_name="config")
    assert cfg.env.name == "HalfCheetah-v5"
    assert cfg.buffer.size == 50_000 and cfg.collector.frames_per_batch == 2048
    assert (cfg.train.critic_steps, cfg.train.actor_steps, cfg.train.batch_size) == (200, 1000, 256)
    assert (cfg.optim.name, cfg.optim.momentum, cfg.optim.critic_lr) == ("sgd", 0.9, 0.01)
    assert (cfg.loss.beta, cfg.loss.max_weight, cfg.loss.gamma, cfg.loss.lmbda) == (1.0, 20.0, 0.99, 0.95)
    assert (cfg.eval.interval, cfg.eval.episodes) == (50, 32)
    # 16 envs in two synchronous processes: every batch comes from the current policy.
    assert (cfg.collector.type, cfg.collector.num_workers, cfg.env.num_envs) == ("multi_sync", 2, 8)


@pytest.mark.parametrize("task", PRESETS)
def test_preset_completes_a_short_run(task, tmp_path):
    trainer = run_recipe(tmp_path, f"task={task}", "checkpoint.interval=0")
    assert trainer.frames == 1024 and trainer.iteration == 4
    returns = read_csv(tmp_path, "eval/return_mean")
    assert len(returns) == 2 and all(torch.isfinite(torch.tensor(v)) for _, v in returns)
    batch = trainer.replay_buffer.sample()
    dist = trainer.loss_module.actor_network.get_dist(batch)
    expected = OneHotCategorical if task == "lunarlander" else IndependentNormal
    assert isinstance(dist, expected)


def leaves(tree: dict) -> dict:
    """A config tree's keys (the recipe's dotted keys) and their values, interpolations unresolved."""
    values = {}
    for key in recipe_compose.config_keys(tree):
        value = tree
        for part in key.split("."):
            value = value[part]
        values[key] = value
    return values


def settings(*overrides: str) -> dict:
    return leaves(OmegaConf.to_container(recipe_compose.compose_config(*overrides), resolve=False))


def modern_departures(task: str) -> dict:
    """What the modern preset's two files (shared, then the task's) set for ``task``."""
    departures = {}
    for pattern in MODERN_FILES:
        path = pattern.with_name(pattern.name.format(task=task))
        if path.is_file():
            departures |= leaves(OmegaConf.to_container(OmegaConf.load(path)))
    return departures


@pytest.mark.parametrize("task", PRESETS)
def test_the_faithful_preset_is_the_default_and_changes_nothing(task):
    assert settings(f"task={task}", "preset=faithful") == settings(f"task={task}")


@pytest.mark.parametrize("task", PRESETS)
def test_the_modern_preset_departs_from_the_faithful_one_only_where_its_files_say(task):
    faithful, modern = settings(f"task={task}"), settings(f"task={task}", "preset=modern")
    departures = modern_departures(task)
    if modern["optim.name"] == "adam":  # Adam's actor lr: twice the task's SGD one
        assert departures["optim.actor_lr"] == pytest.approx(2 * faithful["optim.actor_lr"])
    changed = {key for key in modern if modern[key] != faithful[key]}
    assert changed == {key for key, value in departures.items() if faithful[key] != value}
    assert {key: modern[key] for key in departures} == departures
    assert OmegaConf.to_container(OmegaConf.load(MODERN_FILES[0]))["output_dir"].startswith(
        "outputs/${task_name}-modern/"
    )


def test_the_command_line_overrides_the_modern_preset():
    cfg = recipe_compose.compose_config("task=walker2d", "preset=modern", "loss.beta=1.0", "optim.actor_lr=3e-5")
    assert (cfg.loss.beta, cfg.optim.actor_lr) == (1.0, 3e-5)


def test_a_modern_run_goes_to_its_own_outputs_and_keeps_the_command_lines_settings(tmp_path):
    """``torchrl-awr train preset=modern`` with no output_dir: outputs/<task>-modern/, and the
    run's config.yaml records the preset, its departures and the command line's override of one."""
    small = [o for o in SMALL if not o.startswith("task=")]
    command = [sys.executable, "-m", "torchrl_awr", "train", "task=inverted_pendulum", *small, "preset=modern"]
    result = subprocess.run([*command, "loss.beta=0.7"], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "inverted_pendulum-modern").iterdir()
    assert run.name.endswith("_seed0") and (run / "checkpoint.pt").is_file()
    saved = OmegaConf.load(run / "config.yaml")
    assert (saved.preset_name, saved.optim.name, saved.loss.beta) == ("modern", "adam", 0.7)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["outputs"]
