"""`python -m orchestrator.cli`: the `phasebench` command."""

from . import main

main()
