"""Runs shared between experiments: a run that another experiment of the same output folder already trained is
copied into a grid instead of being trained again.

Two runs with the same run key resolve to the same config (`harness/resolve.py`), so they train the same model; a
grid that lists the baseline of an earlier study, or re-runs one of its variants under a new experiment name, finds
that run finished in another MLflow experiment. `copy_run` gives this grid its own MLflow run holding the
original's params, every metric with its history (the loss curves), its tags and its artifacts (predictions,
every evaluation), tagged `ablate.copied_from` with the original's run id and experiment. The checkpoint is shared
already: checkpoint folders are named by run key. The copy then meets the grid's usual checks: evaluated with other
settings, it is scored again from that checkpoint; trained on another build of the world or zoo, the report says
so. `ablate grid run --no-reuse` trains every run of the grid itself.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from harness.resume import WEIGHTS_DIGEST, checkpoint_dir, weights_digest
from harness.tracking import MAX_PARAMS_PER_BATCH, Store

MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
COPIED_FROM = "ablate.copied_from"
# Tags of a run's place and history, not of what it trained: never copied (the copy gets its own).
OWN_TAGS = ("mlflow.", "ablate.grid", "ablate.sweep", "ablate.study", "ablate.trial", "ablate.search_params",
            "ablate.retry_of", "ablate.resumed_from", COPIED_FROM)
CANDIDATES = 20  # finished runs of one key looked at, newest first


def finished_elsewhere(client: MlflowClient, store: Store, exp_id: str, key: str, usable: Callable[[Any], bool]):
    """The newest finished grid run of run key `key` in another experiment of the store that `usable(run)`
    accepts (the grid passes: trained on the build this code makes) and whose predictions and checkpoint are still
    there (so a copy can be reported and scored again; the checkpoint folder, shared by the key, still holding the
    weights the run was scored with, where it names them), or None. Sweep trials are not taken: they carry a trial's
    settings and history."""
    folder = checkpoint_dir(store, key)
    if not (folder / "trainable.pt").is_file():
        return None
    others = [e.experiment_id for e in client.search_experiments() if e.experiment_id != exp_id]
    if not others:
        return None
    found = client.search_runs(others, filter_string=f"tags.`ablate.run_key` = '{key}' and "
                                                     "tags.`ablate.kind` = 'run' and attributes.status = 'FINISHED'",
                               order_by=["attributes.end_time DESC"], max_results=CANDIDATES)
    held = None  # the folder's weights digest, hashed once and only when a candidate names its own
    for run in found:
        named = run.data.tags.get(WEIGHTS_DIGEST)
        if named is not None and held is None:
            held = weights_digest(folder)
        if "ablate.sweep" not in run.data.tags and named in (None, held) and usable(run) \
                and store.artifact_file(run.info.artifact_uri, "predictions.jsonl") is not None:
            return run
    return None


def copy_run(client: MlflowClient, store: Store, source, exp_id: str, run_name: str, tags: dict[str, str]) -> str:
    """A FINISHED copy of MLflow run `source` in experiment `exp_id`: its params, metric histories, tags and
    artifacts, with `tags` (this grid's placement and this run's labels: the run key leaves names out, so the
    source may carry another variant's) set over them and the `variant` param set to `tags["ablate.variant"]`.
    Returns the new run id. A copy that fails half-way is deleted, and the error raised."""
    own = {k: v for k, v in source.data.tags.items() if not k.startswith(OWN_TAGS)}
    origin = client.get_experiment(source.info.experiment_id).name
    run_id = client.create_run(exp_id, run_name=run_name, start_time=source.info.start_time, tags={
        **own, **tags, COPIED_FROM: f"{source.info.run_id} (experiment {origin})"}).info.run_id
    try:
        params = [Param(k, tags.get("ablate.variant", v) if k == "variant" else v)
                  for k, v in source.data.params.items()]
        for i in range(0, len(params), MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[i:i + MAX_PARAMS_PER_BATCH])
        history: list[Metric] = [m for key in source.data.metrics
                                 for m in client.get_metric_history(source.info.run_id, key)]
        for i in range(0, len(history), MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=history[i:i + MAX_METRICS_PER_BATCH])
        _copy_artifacts(client, store, source, run_id)
        client.set_terminated(run_id, status="FINISHED", end_time=source.info.end_time)
    except BaseException:
        client.delete_run(run_id)
        raise
    return run_id


def _copy_artifacts(client: MlflowClient, store: Store, source, run_id: str) -> None:
    """Every artifact of `source` into run `run_id`: a folder copy where artifacts are local files, through the
    tracking server otherwise."""
    src = store.artifact_dir(source.info.artifact_uri)
    dst = store.artifact_dir(client.get_run(run_id).info.artifact_uri)
    if src is not None and dst is not None:
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        return
    if not client.list_artifacts(source.info.run_id):
        return
    with tempfile.TemporaryDirectory() as tmp:
        client.log_artifacts(run_id, client.download_artifacts(source.info.run_id, "", tmp))
