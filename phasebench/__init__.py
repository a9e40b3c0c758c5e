"""The `phasebench` command (`phasebench.cli`), the top of the house: it drives the orchestrator, the store and the
dashboards, and nothing below imports it."""
