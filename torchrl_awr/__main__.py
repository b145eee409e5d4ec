"""``python -m torchrl_awr``: the ``torchrl-awr`` command (:mod:`torchrl_awr.commands`)."""

from torchrl_awr.commands import main

if __name__ == "__main__":  # the collector's worker processes import this module again
    main()
