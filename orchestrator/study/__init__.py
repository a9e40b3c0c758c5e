"""Optuna studies: a search space over run fields and model knobs, run trial by trial on Ray.

A study spec (YAML) has `name`, optional `description`, `defaults` (fixed run fields and model knobs),
`space` (per parameter `{choices: [...]}` or `{low, high, step?, log?}`), `objectives` (one or more of
`maximize|minimize params|tokens_per_s|peak_memory|val_loss`), optional `constraints`
(`vram_budget_gb`), `sampler` (tpe | nsga2 | gp | grid | random, with `seed`) and `pruner`
(none | median: training studies that minimise `val_loss`).

The driver asks Optuna for trials and runs each through the one dispatcher (`orchestrator.dispatch`, as a
batch's runs), with up to K in flight. Every trial that resolves to a valid config is a phasebench run
in a batch named after the study (`study_name`, `trial_number` set) whose result the store records as
for any batch. A config whose hash already has a finished result (`ok`, `oom`, `nonfinite`) is answered
from the database, not rerun. Worker death and errors tell FAIL; a sampled config that does not validate
tells PRUNED with the reason in the trial's user attrs; OOM and over-budget trials are COMPLETE but
infeasible: the constraint (measured peak GiB - budget, at least 1 for an OOM) is stored in the trial's
user attr `constraints` and given to the sampler (`Trial.set_constraint` on Optuna >= 5, the sampler's
`constraints_func` on Optuna 4); an OOM's unmeasured objective values are told as the worst possible
(+-inf). On CUDA the budget also caps the worker (`vram_budget_gb` in the config: the allocator's
per-process fraction), so an over-budget model OOMs as it would on a smaller card. Optuna's storage is
an RDBStorage on the same URL as the results (its own tables and `alembic_version`; phasebench's are `pb_*` and
`pb_alembic_version`). A study continues where it stopped: trials left RUNNING by a driver that died
are marked FAIL, and every trial counts toward `--trials`. Several drivers may run one study at once
(`drivers.py`: each keeps a lease of its own and fails only the trials of drivers that are gone), and
`phasebench cancel` of the study's batch stops every one of them. With
`pruner: median`, the validation losses a training run streams are reported to Optuna as they arrive
and a run the pruner stops is cancelled (its run stored as `failed`, "pruned ...", its trial PRUNED).

Objective units: params (count), tokens_per_s, peak_memory in GiB (the allocator's peak on CUDA, the
worker's peak RSS on CPU), val_loss (the last evaluation of a `job: train` run, nats per token).
"""

from .driver import StudyDriver, StudyOutcome, TrialReport, run_study
from .records import best, export, list_studies, load, pareto_front, study_summary, trial_records
from .spec import SPEC_ATTR, Objective, StudySpec, load_study_spec, parse_study_spec
from .storage import create_study

__all__ = [
    "SPEC_ATTR",
    "Objective",
    "StudyDriver",
    "StudyOutcome",
    "StudySpec",
    "TrialReport",
    "best",
    "create_study",
    "export",
    "list_studies",
    "load",
    "load_study_spec",
    "parse_study_spec",
    "pareto_front",
    "run_study",
    "study_summary",
    "trial_records",
]
