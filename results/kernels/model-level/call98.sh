#!/bin/bash
# Run 43 (thirty-fifth session, any card): item 5 again on the landed tree, kernels on against off in a training
# step at ~350M (examples/kernels-on-off.yaml), its batch in a SQLite file and exported to JSON; then the graph-
# captured and compiled steps' GPU tests, then ~1.3B (kernels-on-off-1.3b.yaml), as the budget allows. Needs
# .gpu-run/ carried (Ray, Optuna, SQLAlchemy, Alembic).
# `COMMIT=<tree> bash results/kernels/model-level/call98.sh`; output $OUT/run43.tgz (~400 s).
source results/kernels/steps.sh
begin run43 400
bash .gpu-run/install.sh > $R/install.txt 2>&1
export PYTHONPATH=/tmp/site:$PYTHONPATH
P="python3 -m phasebench"
model_level(){
  TAILN=16 step $1 $2 $P run examples/$1.yaml --db sqlite:///$R/$1.db
  TAILN=2 step $1-export 20 $P results export --db sqlite:///$R/$1.db --batch $1 --format json --out $R/$1.json; }
model_level kernels-on-off 240
TAILN=4 step tests-execution 150 python3 -m pytest -q -p no:cacheprovider -m gpu \
  tests/orchestrator/test_execution_gpu.py tests/orchestrator/test_compile.py
model_level kernels-on-off-1.3b 330
echo "== done, $(left) s left"
