"""What a training run shows while it runs: a progress bar on a terminal, and otherwise (a log
file, a cluster job's output, or no bar asked for) one plain line per evaluation, which reads well
where carriage returns do not."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

MODES = ("auto", "bar", "lines", "none")


def display_mode(progress: bool | str) -> str:
    """``True``/``"auto"``: a bar on a terminal, lines otherwise; ``False``/``"none"``: nothing."""
    mode = {True: "auto", False: "none"}.get(progress, progress) if isinstance(progress, bool) else progress
    if mode not in MODES:
        raise ValueError(f"progress={progress!r} is not valid; choose True, False or one of: {', '.join(MODES)}.")
    if mode == "auto":
        return "bar" if sys.stdout.isatty() else "lines"
    return mode


class ProgressDisplay:
    """The bar or the lines of one :meth:`AWRTrainer.train` call, counting samples (iterations
    offline) up to ``total``."""

    def __init__(self, progress: bool | str, *, total: int, initial: int, offline: bool):
        self.mode = display_mode(progress)
        self.offline = offline
        self.last_evaluation = "-"
        self.total = total
        self.bar = tqdm(
            total=total,
            initial=min(initial, total),
            unit=" it" if offline else " samples",
            unit_scale=not offline,  # 51.2k/1.00M: room for the returns at 80 columns
            disable=self.mode != "bar",
            dynamic_ncols=True,
        )

    def note(self, text: str) -> None:
        """A line of its own (above the bar), in every mode but ``none``."""
        if self.mode != "none":
            self.bar.write(text)

    def update(self, done: int, step: int, *, iteration: int, evaluation: dict, train_return, minutes: float) -> None:
        """After an iteration: ``done`` more counted, now at ``step``; a line when it evaluated."""
        if self.mode == "bar":
            self.bar.update(done)
            if evaluation:
                self.last_evaluation = f"{evaluation['eval/return_mean']:.1f}"
            train = f"{train_return:.1f}" if train_return is not None else "-"
            self.bar.set_postfix_str(f"eval {self.last_evaluation} train {train}", refresh=False)
        elif self.mode == "lines" and evaluation:
            where = (
                f"iteration {iteration:,} of {self.total:,}"
                if self.offline
                else f"{step:,} of {self.total:,} samples (iteration {iteration:,})"
            )
            train = f", train {train_return:.1f}" if train_return is not None else ""
            self.bar.write(
                f"{where}: eval {evaluation['eval/return_mean']:.1f} "
                f"± {evaluation['eval/return_std']:.1f}{train} ({minutes:.1f} min)"
            )

    def close(self) -> None:
        self.bar.close()
