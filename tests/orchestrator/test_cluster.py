"""A multi-node Ray cluster (a head and two worker nodes on this machine, `ray.cluster_utils.Cluster`):
runs land on the nodes their resources name, every result lands once in the driver's one database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from orchestrator import api
from orchestrator.store.repository import Store

REPO = Path(__file__).resolve().parents[2]
SCRIPT = r"""
import atexit, json, sys
import ray
from ray.cluster_utils import Cluster
from orchestrator import api

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
atexit.register(cluster.shutdown)  # a failing script still takes its nodes down
atexit.register(ray.shutdown)
cluster.add_node(num_cpus=1, resources={"node_a": 4})
cluster.add_node(num_cpus=1, resources={"node_b": 4})
cluster.wait_for_nodes()
tiny = {"vocab_size": 256, "d_model": 32, "n_layers": 1, "n_heads": 2, "device": "cpu", "seq_len": 16, "steps": 1,
        "warmup_steps": 0}
cases = [{"model": "transformer", "seed": i, "resources": {"node_a": 1}} for i in range(2)]
cases += [{"model": "phase8-seed", "seed": i, "resources": {"node_b": 1}} for i in range(2)]
cases += [{"model": "phase7-seed", "seed": i} for i in range(2)]
outcome = api.run({"name": "cluster", "defaults": tiny, "cases": cases}, db=sys.argv[1], address=cluster.address)
nodes = {n["NodeID"]: sorted(k for k in n["Resources"] if k.startswith("node_")) for n in ray.nodes() if n["Alive"]}
print("RESULT " + json.dumps({"counts": outcome.counts, "nodes": nodes}))
"""


def run_cluster_script(script: str, db: str, *args: str) -> dict:
    """Run a driver script in its own process (its own Ray cluster); returns the JSON it printed."""
    proc = subprocess.run(
        [sys.executable, "-c", script, db, *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=os.environ | {"PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(next(line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")))


def test_runs_spread_over_nodes_and_land_once(sqlite_url):
    report = run_cluster_script(SCRIPT, sqlite_url)
    assert report["counts"] == {"ok": 6}
    node_of = {tuple(labels): node for node, labels in report["nodes"].items()}
    rows = api.results(db=sqlite_url)
    assert len(rows) == 6 and len({r["run_id"] for r in rows}) == 6 and all(r["node_id"] for r in rows)
    for row in rows:
        wanted = sorted(row["config"]["resources"])
        if wanted:
            assert row["node_id"] == node_of[tuple(wanted)], (row["model"], wanted)
    assert len({r["node_id"] for r in rows}) >= 2


NODE_LOSS = r"""
import atexit, json, sys, threading, time
import ray
import sqlalchemy as sa
from ray.cluster_utils import Cluster
from orchestrator import api

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
atexit.register(cluster.shutdown)
atexit.register(ray.shutdown)
doomed = cluster.add_node(num_cpus=1)
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
job = {"job": "train", "model": "transformer", "vocab_size": 256, "d_model": 32, "n_layers": 1, "n_heads": 2,
       "device": "cpu", "seq_len": 32, "batch_size": 4, "steps": 800, "eval_every": 0, "eval_tokens": 256,
       "timeout_s": 600}
spec = {"name": "node-loss", "defaults": job, "cases": [{"seed": i} for i in range(4)]}
done = {}
driver = threading.Thread(target=lambda: done.update(outcome=api.run(spec, db=sys.argv[1], address=cluster.address)))
driver.start()
engine = sa.create_engine(sys.argv[1])
def training_now():  # runs with streamed steps and no result yet: in flight on a node
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(DISTINCT run_id) FROM pb_train_metrics m WHERE NOT EXISTS "
                                        "(SELECT 1 FROM pb_results r WHERE r.run_id = m.run_id)")).scalar()
    except sa.exc.OperationalError:
        return 0
deadline = time.monotonic() + 300
while training_now() < 2:
    assert time.monotonic() < deadline and driver.is_alive()
    time.sleep(0.2)
cluster.remove_node(doomed, allow_graceful=False)   # a worker machine dies with a run on it
driver.join(timeout=500)
print("RESULT " + json.dumps({"counts": done["outcome"].counts, "removed": doomed.node_id}))
"""


def test_a_lost_worker_node_has_its_runs_rescheduled(sqlite_url):
    report = run_cluster_script(NODE_LOSS, sqlite_url)
    assert report["counts"] == {"ok": 4}
    rows = api.results(db=sqlite_url)
    assert len({r["run_id"] for r in rows}) == 4 and all(r["status"] == "ok" for r in rows)
    assert all(r["node_id"] != report["removed"] for r in rows)  # every result came from the surviving node
    store = Store(sqlite_url)
    for row in rows:  # the rescheduled run's curve is its last attempt's: every step once
        assert row["extra"]["tokens_seen"] == 800 * 4 * 32
        assert [m["step"] for m in store.metrics(row["run_id"]) if m["kind"] == "train"] == list(range(1, 801))
    store.close()


SHIPPED = r"""
import atexit, importlib, json, sys, textwrap
from pathlib import Path
import ray
from ray.cluster_utils import Cluster
from orchestrator import api

folder = Path(sys.argv[2])  # on no worker's path: the workers get it only from the job's py_modules
(folder / "tinymix.py").write_text(textwrap.dedent('''
    from dataclasses import dataclass
    from torch import nn
    import models

    @dataclass
    class TinyMixConfig(models.ModelConfig):
        pass

    class TinyMix(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.embed, self.head = nn.Embedding(c.vocab_size, c.d_model), nn.Linear(c.d_model, c.vocab_size)

        def forward(self, ids):
            return self.head(self.embed(ids).cumsum(1))

    models.register_family("tinymix", TinyMixConfig, TinyMix)
'''))
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
atexit.register(cluster.shutdown)
atexit.register(ray.shutdown)
cluster.add_node(num_cpus=1, resources={"node_a": 4})
cluster.add_node(num_cpus=1, resources={"node_b": 4})
cluster.wait_for_nodes()
tiny = {"model": "tinymix", "vocab_size": 64, "d_model": 16, "n_layers": 1, "n_heads": 2, "device": "cpu",
        "seq_len": 16, "steps": 1, "warmup_steps": 0}
cases = [{"seed": i, "resources": {node: 1}} for i, node in enumerate(["node_a", "node_b"])]
spec = {"name": "shipped", "imports": [str(folder / "tinymix.py")], "defaults": tiny, "cases": cases}
outcome = api.run(spec, db=sys.argv[1], address=cluster.address)
locate = ray.remote(num_cpus=1, resources={"node_b": 1})(lambda: importlib.import_module("tinymix").__file__)
where = ray.get(locate.remote())
print("RESULT " + json.dumps({"counts": outcome.counts, "worker_file": where}))
"""


def test_a_users_module_is_shipped_to_worker_nodes(sqlite_url, tmp_path):
    """Two runs of a family from a file on no worker's path, one per worker node: both import it from the
    copy Ray's runtime_env put on their node."""
    report = run_cluster_script(SHIPPED, sqlite_url, str(tmp_path))
    assert report["counts"] == {"ok": 2}
    assert report["worker_file"] != str(tmp_path / "tinymix.py") and "runtime_resources" in report["worker_file"]
    rows = api.results(db=sqlite_url)
    assert {r["model"] for r in rows} == {"tinymix"} and len({r["node_id"] for r in rows}) == 2


AUTO_DEVICE = r"""
import atexit, json, sys
import ray
from ray.cluster_utils import Cluster
from orchestrator import api
from orchestrator.runner import cluster_auto_device

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})  # a CPU head (this machine)
atexit.register(cluster.shutdown)
atexit.register(ray.shutdown)
spec = {"name": "auto", "defaults": {"model": "transformer", "d_model": 16, "n_layers": 1, "n_heads": 2,
        "vocab_size": 64}, "grid": {"mode": ["inference"]}}
devices = {"cpu head": api.plan(spec).runs[0].config["device"]}
with cluster_auto_device(cluster.address):
    devices["cpu cluster"] = api.plan(spec).runs[0].config["device"]
cluster.add_node(num_cpus=1, num_gpus=1)  # a GPU worker node (Ray counts the GPU it is told of)
cluster.wait_for_nodes()
with cluster_auto_device(cluster.address):
    devices["gpu worker"] = api.plan(spec).runs[0].config["device"]
print("RESULT " + json.dumps(devices))
"""


def test_device_auto_is_decided_by_the_clusters_nodes_not_the_head(sqlite_url):
    assert run_cluster_script(AUTO_DEVICE, sqlite_url) == {
        "cpu head": "cpu",
        "cpu cluster": "cpu",
        "gpu worker": "cuda",
    }
