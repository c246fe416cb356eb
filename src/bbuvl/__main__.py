"""`python -m bbuvl ...`: the `bbuvl` console script itself (bbuvl/entry.py, pyproject.toml's [project.scripts]),
its one-line endings on Ctrl-C, SIGTERM and SIGHUP included. `python -m bbuvl.cli` is the CLI without them, for
launchers."""

from bbuvl.entry import main

if __name__ == "__main__":
    main()
