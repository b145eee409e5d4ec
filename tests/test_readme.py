"""The README and the guide (docs/guide): every example runs as written, every command is a
command whose settings exist, the README stays a page (8 KB) and shows the results table."""

import logging
import re
import shlex
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from torchrl_awr.commands import COMMANDS
from torchrl_awr.recipe.compose import CONFIG_DIR

from recipe_helpers import SMALL, run_recipe

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDE = sorted((ROOT / "docs" / "guide").glob("*.md"))
PAGES = [README, *GUIDE, ROOT / "docs" / "sweeps.md"]


def readme_example(marker: str, language: str = "python") -> str:
    """The example marked ``<!-- readme-example: marker -->`` in the README or a guide page."""
    (text,) = [page.read_text() for page in PAGES if f"<!-- readme-example: {marker} -->" in page.read_text()]
    after = text.split(f"<!-- readme-example: {marker} -->", 1)[1]
    return after.split(f"```{language}", 1)[1].split("```", 1)[0]


def test_readme_loss_example_trains(capsys):
    namespace: dict = {}
    exec(compile(readme_example("loss"), str(README), "exec"), namespace)
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 4  # one line per collected batch
    losses = namespace["losses"]
    assert set(losses.keys()) >= {"loss_actor", "loss_critic", "weight_ess", "explained_variance"}
    assert all(v.isfinite().all() for v in losses.values())
    assert 0 < losses["weight_ess"] <= 1


def test_readme_trainer_example_trains(capfd, caplog):
    namespace: dict = {}
    exec(compile(readme_example("trainer"), str(README), "exec"), namespace)
    trainer = namespace["trainer"]
    assert trainer.frames == 1024 and trainer.iteration == 4
    out, err = capfd.readouterr()  # file descriptors: TorchRL's log handler holds the original streams
    assert out.strip().startswith("1024 samples, last loss_actor ")
    assert not [r for r in caplog.records if r.name == "torchrl" and r.levelno < logging.WARNING]  # TorchRL's INFO
    assert trainer.store.chronological().shape == (1, 1024)


def test_readme_script_example_runs_as_a_script(tmp_path):
    """The script example as a file, run as a user runs it: its collector starts worker
    processes, which import the script again (without its ``__main__`` guard it would hang)."""
    (tmp_path / "example.py").write_text(readme_example("script"))
    result = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.fullmatch(r"8192 samples, evaluation return -?\d+\.\d", result.stdout.strip().splitlines()[-1])
    assert (tmp_path / "runs" / "pendulum" / "logs" / "scalars" / "frames.csv").is_file()


def test_readme_install_commands_match_ci():
    ci = (README.parent / ".ci" / "run").read_text()
    text = README.read_text()
    for command in (
        'pip install torch==2.13.0 -e ".[test,ray]"',
        "python -m pytest -q",
        "ruff check . && ruff format --check .",
    ):
        assert command in text and command in ci, command


def command_words(words: list[str]) -> list[str]:
    """A README command's words as run here: ``torchrl-awr`` is ``python -m torchrl_awr`` (this
    interpreter; the installed command is the wheel test's)."""
    return [sys.executable, "-m", "torchrl_awr", *words[1:]] if words[0] == "torchrl-awr" else words


def test_readme_offline_commands_run_as_written(tmp_path):
    """The three offline commands, on a small trained run, with the tests' small settings and
    the offline run's directory fixed: a dataset, an offline run, an online run from it."""
    run_recipe(tmp_path / "outputs" / "hopper" / "run", "eval.interval=0")
    commands = [line.split("#")[0].split() for line in readme_example("offline", "bash").strip().splitlines()]
    assert [c[:3] for c in commands] == [
        ["torchrl-awr", "dataset", "make"],
        ["torchrl-awr", "train-offline", "task=hopper"],
        ["torchrl-awr", "train", "task=hopper"],
    ]
    small = [o for o in SMALL if o != "task=hopper"]
    extra = [[], [*small, "offline.iterations=1", "output_dir=outputs/hopper-offline/run"], small]
    for command, more in zip(commands, extra):
        words = command_words([w.replace("<run>", "run") for w in command])
        result = subprocess.run([*words, *more], cwd=tmp_path, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "data" / "hopper-medium" / "dataset.json").is_file()
    online_runs = list((tmp_path / "outputs" / "hopper").glob("*_seed0"))
    assert len(online_runs) == 1 and (online_runs[0] / "checkpoint.pt").is_file()


def readme_commands() -> list[list[str]]:
    """Every ``torchrl-awr`` command of the README's and the guide's shell blocks, as words
    (comments, a leading ``pip install ... &&`` and environment variables left out; a command
    continued over lines with ``\\`` as one)."""
    text = "".join(page.read_text() for page in PAGES).replace("\\\n", " ")
    blocks = [block.split("```", 1)[0] for block in text.split("```bash")[1:]]
    commands = []
    for line in (line for block in blocks for line in block.splitlines()):
        for part in line.split("#")[0].split("&&"):
            words = shlex.split(part)
            while words and "=" in words[0] and not words[0].startswith("torchrl-awr"):
                words = words[1:]  # WANDB_MODE=offline
            if words and words[0] == "torchrl-awr":
                commands.append([w.replace("<run>", "run") for w in words])
    return commands


def one_run_of(arguments: list[str]) -> list[str]:
    """A command line's overrides as one run has them: a sweep's (``-m``) first value of each
    choice; its search intervals, which a sweeper draws, and Hydra's own settings left out."""
    if "-m" not in arguments:
        return arguments
    overrides = OverridesParser.create().parse_overrides([a for a in arguments if a != "-m"])
    run = []
    for override in overrides:
        if override.key_or_group.startswith("hydra"):
            continue
        if not override.is_sweep_override():
            run.append(override.input_line)
        elif override.is_discrete_sweep():
            run.append(f"{override.key_or_group}={next(iter(override.sweep_string_iterator()))}")
    return run


def test_the_readme_is_a_page():
    assert len(README.read_bytes()) <= 8192


def test_readme_commands_are_the_commands_and_their_settings_exist():
    """Each command of the README and the guide names a subcommand of ``torchrl-awr``, and each
    training command's settings compose into its config (a renamed key or preset fails here)."""
    commands = readme_commands()
    assert len(commands) >= 25
    assert {c[1] for c in commands} <= set(COMMANDS), {c[1] for c in commands} - set(COMMANDS)
    for words in commands:
        if words[1] in ("train", "train-offline"):
            config = "offline" if words[1] == "train-offline" else "config"
            with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
                compose(config, overrides=one_run_of(words[2:]))
    assert ["torchrl-awr", "train"] in commands  # the quick start's


def test_readme_shows_the_reports_tables_of_both_presets():
    report = (README.parent / "docs" / "results.md").read_text()
    table = report.split("<!-- summary-table -->")[1].strip()
    assert table.startswith("| task | 1M: ours") and table in README.read_text()
    modern = report.split("<!-- modern-table -->")[1].strip()
    assert modern.startswith("| task | modern 1M") and modern in README.read_text()
