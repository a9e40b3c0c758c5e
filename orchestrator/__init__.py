"""spec -> jobs -> Ray -> results: the orchestrator of phasebench (see orchestrator/README.md)."""
