"""``python -m torchrl_awr``: the ``torchrl-awr`` command (:mod:`torchrl_awr.cli`)."""

from torchrl_awr.cli import main

if __name__ == "__main__":  # the collector's worker processes import this module again
    main()
