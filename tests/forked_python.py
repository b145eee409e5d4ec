"""``python ARGS...`` for many short commands at once, each a fork of one interpreter that has
imported the recipe's packages already (torch, TorchRL, Hydra: three seconds a command otherwise).

    python tests/forked_python.py JOBS < requests.json > exit_codes.json

Each request is ``{"args", "cwd", "env", "stdout", "stderr"}``: ``args`` as Python takes them (a
script and its arguments, or ``-m`` and a module), run in ``cwd`` with exactly the environment
``env``, its output written to the files ``stdout`` and ``stderr``; at most ``JOBS`` at a time.
The child runs the script or module as ``__main__``, as ``python`` does, and exits with the code
``python`` would give. Used by :func:`recipe_helpers.run_commands` for commands that end before
any training (bad input): what they run is the installed command's code path.
"""

from __future__ import annotations

import json
import logging
import os
import runpy
import sys
import traceback

import torchrl_awr.commands.train  # noqa: F401  (the imports that every child shares)


def exit_code(err: SystemExit) -> int:
    """The code ``python`` exits with for ``sys.exit(code)``."""
    if err.code is None or isinstance(err.code, int):
        return err.code or 0
    print(err.code, file=sys.stderr)
    return 1


def run(request: dict) -> None:
    """In the forked child: the command of ``request``, then exit with its code."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    args = request["args"]
    try:
        if args[0] == "-m":
            sys.argv = [args[1], *args[2:]]
            sys.path[0] = request["cwd"]
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(args)
            sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
            runpy.run_path(args[0], run_name="__main__")
        code = 0
    except SystemExit as err:
        code = exit_code(err)
    except BaseException:
        traceback.print_exc()
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(jobs: int) -> None:
    requests = json.load(sys.stdin)
    codes: list[int | None] = [None] * len(requests)
    running: dict[int, int] = {}  # pid -> request index
    for index, request in enumerate(requests):
        while len(running) >= jobs:
            pid, status = os.wait()
            codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
        pid = os.fork()
        if pid == 0:
            run(request)
        running[pid] = index
    while running:
        pid, status = os.wait()
        codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    json.dump(codes, sys.stdout)


if __name__ == "__main__":
    main(int(sys.argv[1]))
