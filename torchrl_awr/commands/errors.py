"""The commands' one error and exit contract: 0 done, 2 bad input (one ``error:`` line), 3 the
collector lost (training), 130 interrupted (Ctrl-C, SIGTERM); 1 is left for what is a bug.

Hydra's own errors are bad input too. Hydra reports a config it cannot compose (``task=hoper``, ``foo=1`` without ``+``, an override
it cannot parse) in several lines and exits 1, which the recipes keep for failures that are not
the user's input. :func:`config_errors_exit_2` wraps a ``@hydra.main`` function::

    @config_errors_exit_2
    @hydra.main(config_path="config", config_name="config", version_base="1.3")
    def main(cfg): ...

``HYDRA_FULL_ERROR=1`` keeps Hydra's full report.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from collections.abc import Callable
from typing import NoReturn

from hydra.errors import CompactHydraException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from torchrl_awr.checkpoint import CheckpointError
from torchrl_awr.recipe.compose import FREE_KEYS, unknown_key_error
from torchrl_awr.recipe.rundir import RunDirectoryError
from torchrl_awr.video import RenderError

BAD_INPUT_EXIT = 2
COLLECTOR_LOST_EXIT = 3
INTERRUPTED_EXIT = 130  # the shell's code for a command stopped by Ctrl-C
FULL_ERROR = "HYDRA_FULL_ERROR"
# What bad input raises, from a path without a checkpoint to a missing optional package or a
# machine that cannot render.
BAD_INPUT = (
    ValueError,
    KeyError,
    ImportError,
    OSError,
    CheckpointError,
    RunDirectoryError,
    FloatingPointError,
    RenderError,
)


def exit_bad_input(message: object) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(BAD_INPUT_EXIT)


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``error:`` line and exit code 2, as every other
    bad input of the commands (argparse's own print the usage first)."""

    def error(self, message: str) -> NoReturn:
        exit_bad_input(message)


def config_error_line(err: CompactHydraException) -> str:
    """Hydra's report of ``err`` (and of the OmegaConf error under it) as one line; for a key the
    recipe does not have, the recipe's own message (Hydra's suggests adding it with ``+``)."""

    overridden = re.match(r"Could not override '([^']+)'", str(err))
    if overridden and isinstance(err.__cause__, (ConfigKeyError, ConfigAttributeError)):
        key = overridden.group(1)
        if not key.startswith(("hydra.", *(f"{free}." for free in FREE_KEYS))):
            return str(unknown_key_error([key]))
        return " ".join(line.strip() for line in str(err).splitlines())  # "To append to your config use +..."
    parts = [str(err)]
    if isinstance(err.__cause__, OmegaConfBaseException):
        parts.append(str(err.__cause__).splitlines()[0])  # its other lines repeat the key and the node's type
    lines = [line.strip() for part in parts for line in part.splitlines()]
    if "Config search path:" in lines:  # Hydra's own search path, not the user's input
        lines = lines[: lines.index("Config search path:")]
    text = " ".join(line for line in lines if line and not line.startswith("See https://hydra.cc"))
    return text


def config_errors_exit_2(main: Callable[[], None]) -> Callable[[], None]:
    """``main`` (a ``@hydra.main`` function) with Hydra's config errors as one ``error:`` line
    and exit code 2. Hydra prints and exits in its own handler, so the errors are let through
    it (``HYDRA_FULL_ERROR=1`` while ``main`` runs); any other error ends as Python's traceback,
    exit code 1, as before."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        if os.environ.get(FULL_ERROR) == "1":
            return main(*args, **kwargs)
        previous = os.environ.get(FULL_ERROR)
        os.environ[FULL_ERROR] = "1"
        try:
            return main(*args, **kwargs)
        except CompactHydraException as err:
            print(f"error: {config_error_line(err)}", file=sys.stderr)
            sys.exit(BAD_INPUT_EXIT)
        finally:
            if previous is None:
                os.environ.pop(FULL_ERROR, None)
            else:
                os.environ[FULL_ERROR] = previous

    return wrapped
