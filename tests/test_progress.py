"""What a run shows while it runs: the bar's text fits 80 columns, and the lines mode's format."""

from __future__ import annotations

import pytest

from torchrl_awr.progress import ProgressDisplay, display_mode


def test_the_bar_keeps_the_returns_at_80_columns(capsys):
    display = ProgressDisplay("bar", total=1_000_000, initial=0, offline=False)
    display.bar.ncols, display.bar.dynamic_ncols = 80, False
    evaluation = {"eval/return_mean": 1234.56, "eval/return_std": 3.0}
    display.update(51_200, 51_200, iteration=25, evaluation=evaluation, train_return=-1100.25, minutes=0.5)
    display.bar.refresh()
    line = capsys.readouterr().err.split("\r")[-1]
    display.close()
    assert len(line) <= 80 and "51.2k/1.00M" in line and line.rstrip().endswith("eval 1234.6 train -1100.2]")


def test_lines_say_each_evaluation_and_nothing_else(capsys):
    display = ProgressDisplay("lines", total=4096, initial=0, offline=False)
    display.update(2048, 2048, iteration=1, evaluation={}, train_return=None, minutes=0.1)
    evaluation = {"eval/return_mean": 12.345, "eval/return_std": 0.5}
    display.update(2048, 4096, iteration=2, evaluation=evaluation, train_return=10.0, minutes=0.25)
    display.close()
    assert capsys.readouterr().out == "4,096 of 4,096 samples (iteration 2): eval 12.3 ± 0.5, train 10.0 (0.2 min)\n"


def test_modes():
    assert display_mode(False) == "none" and display_mode("lines") == "lines"
    assert display_mode(True) == "lines"  # pytest's output is not a terminal
    with pytest.raises(ValueError, match="progress='loud' is not valid"):
        display_mode("loud")
