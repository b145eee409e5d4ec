"""The README's AWRLoss example runs as written."""

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example(marker: str) -> str:
    text = README.read_text()
    after = text.split(f"<!-- readme-example: {marker} -->", 1)[1]
    return after.split("```python", 1)[1].split("```", 1)[0]


def test_readme_loss_example_trains(capsys):
    namespace: dict = {}
    exec(compile(readme_example("loss"), str(README), "exec"), namespace)
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 4  # one line per collected batch
    losses = namespace["losses"]
    assert set(losses.keys()) >= {"loss_actor", "loss_critic", "weight_ess", "explained_variance"}
    assert all(v.isfinite().all() for v in losses.values())
    assert 0 < losses["weight_ess"] <= 1


def test_readme_trainer_example_trains(capsys):
    namespace: dict = {}
    exec(compile(readme_example("trainer"), str(README), "exec"), namespace)
    trainer = namespace["trainer"]
    assert trainer.frames == 1024 and trainer.iteration == 4
    assert capsys.readouterr().out.strip().startswith("1024 samples, last loss_actor ")
    assert trainer.store.chronological().shape == (1, 1024)


def test_readme_install_commands_match_ci():
    ci = (README.parent / ".ci" / "run").read_text()
    text = README.read_text()
    for command in (
        'pip install torch==2.13.0 -e ".[test,ray]"',
        "python -m pytest -q",
        "ruff check . && ruff format --check .",
    ):
        assert command in text and command in ci, command
