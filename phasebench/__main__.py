"""`python -m phasebench`: the `phasebench` command."""

from .cli import main

main()
