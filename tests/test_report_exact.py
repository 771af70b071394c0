"""The report's numbers are exactly right, read from a real MLflow tracking server.

A synthetic grid with known per-item results is logged to a real `mlflow server` on 127.0.0.1 (runs, metrics and
the predictions artifact, served through the server). `ablate report EXP --tracking-uri URI` then writes the report
into an empty output folder, and its tables must hold exactly the k/N, means, paired-bootstrap deltas (the report's
fixed bootstrap seed) and verdicts computed here from the raw results, independently of the report's code.
"""

from __future__ import annotations

import csv
import gc
import json
import os
import textwrap

import numpy as np
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.resolve import resolve
from harness.runner import run_tags
from harness.tracking import PARENT_TAG

CATEGORIES = {"OCR": 9, "Count": 12, "Color": 7}  # items per category
SKILL = {"lynx": 0.7, "w_cross_attn": 0.3}  # chance of a right answer per item


def known_results(seeds: tuple[int, ...]) -> dict[tuple[str, int], dict[str, tuple[str, bool]]]:
    """(variant, seed) -> item key -> (category, right?)."""
    rng = np.random.default_rng(11)
    results = {}
    for variant, p in SKILL.items():
        for seed in seeds:
            results[(variant, seed)] = {f"openvqa_image-{cat}-{i:03d}": (cat, bool(rng.random() < p))
                                        for cat, n in CATEGORIES.items() for i in range(n)}
    return results


def rows_of(items: dict[str, tuple[str, bool]], split: str | None = None) -> str:
    """A run's predictions.jsonl for `items` (key -> (category, right?)); without `split`, each item's split is its
    key's first part ('openvqa_video_10x-Action-0001')."""
    return "".join(json.dumps({"keys": key, "split": split or key.rsplit("-", 2)[0], "category": cat, "question": "q?", "answer": "a",
                               "pair_id": "", "probe": "", "prediction": "a" if ok else "b", "correct": ok}) + "\n"
                   for key, (cat, ok) in items.items())


def log_grid(uri: str, name: str, seeds: tuple[int, ...], larger: dict | None = None,
             threads: dict | None = None) -> dict:
    """The grid as `ablate grid run` leaves it in MLflow, logged through the server. `larger`: (variant, seed) ->
    items of the 10x splits, logged as `ablate eval RUN --benchmark-scale 10` leaves them. `threads`:
    (variant, seed) -> the torch thread count a run logs (1 where not given)."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(name)
    results = known_results(seeds)
    resolved = {(v, s): resolve(v, "small", seed=s) for v, s in results}
    parent = client.create_run(exp, run_name=name, tags={
        "ablate.kind": "grid", "ablate.grid": name, "ablate.baseline": "lynx", "ablate.scale": "small",
        "ablate.variants": ",".join(SKILL), "ablate.seeds": ",".join(map(str, seeds)),
        "ablate.run_keys": ",".join(r.key for r in resolved.values())}).info.run_id
    for (variant, seed), items in results.items():
        run = resolved[(variant, seed)]
        run_id = client.create_run(exp, tags={**run_tags(run), PARENT_TAG: parent, "ablate.grid": name,
                                              "numerics.device": "Test CPU", "numerics.threads":
                                              str((threads or {}).get((variant, seed), 1))}).info.run_id
        for cat in CATEGORIES:
            k = sum(ok for c, ok in items.values() if c == cat)
            n = CATEGORIES[cat]
            for stat, value in (("k", k), ("n", n), ("acc", 100 * k / n)):
                client.log_metric(run_id, f"eval/openvqa_image/{cat}/{stat}", value, step=10)
        k_all = sum(ok for _, ok in items.values())
        client.log_metric(run_id, "eval/openvqa_image/acc", 100 * k_all / len(items), step=10)
        client.log_text(run_id, rows_of(items, "openvqa_image"), "predictions.jsonl")
        if larger and (variant, seed) in larger:
            client.set_tag(run_id, "ablate.rescored/benchmark_scale", "10")
            client.set_tag(run_id, "ablate.rescored/splits",
                           ",".join(sorted({key.rsplit("-", 2)[0] for key in larger[(variant, seed)]})))
            client.log_text(run_id, rows_of(larger[(variant, seed)]), "rescored/predictions.jsonl")
        client.set_terminated(run_id, "FINISHED")
    client.set_terminated(parent, "FINISHED")
    return results


def bootstrap(results, seeds: tuple[int, ...], n_boot: int = 4000) -> tuple[float, float, float]:
    """Mean of w_cross_attn - lynx over (seed, item) pairs in points; 95% percentile interval from resampling seeds,
    then items (the report's documented scheme: numpy's default_rng(0), seeds drawn first)."""
    items = sorted(results[("lynx", seeds[0])])
    d = np.array([[100.0 * (results[("w_cross_attn", s)][i][1] - results[("lynx", s)][i][1]) for i in items]
                  for s in seeds])
    rng = np.random.default_rng(0)
    seed_draws = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))
    item_draws = rng.integers(0, len(items), size=(n_boot, len(items)))
    boot = np.array([np.mean([d[s, item_draws[b]].mean() for s in seed_draws[b]]) for b in range(n_boot)])
    low, high = np.quantile(boot, [0.025, 0.975])
    return float(d.mean()), float(low), float(high)


def read_table(path) -> dict[str, dict[str, str]]:
    with open(path, encoding="utf-8") as f:
        return {row["variant"]: row for row in csv.DictReader(f)}


def report(tmp_path, uri: str, name: str, seeds: tuple[int, ...]) -> tuple[dict, dict]:
    experiment = tmp_path / f"{name}.yaml"
    experiment.write_text(textwrap.dedent(f"""\
        name: {name}
        scale: small
        baseline: lynx
        variants: [w_cross_attn]
        seeds: {list(seeds)}
        """))
    out = tmp_path / "out"
    before = os.environ.get("MLFLOW_TRACKING_URI")
    assert main(["--out", str(out), "report", str(experiment), "--tracking-uri", uri]) == 0
    folder = out / "reports" / name
    # The report leaves the process's MLflow settings alone: a later command must not inherit this server.
    assert os.environ.get("MLFLOW_TRACKING_URI") == before
    # Only the `ablate` process, which ends with the report, runs it without the cycle collector; a caller of main()
    # goes on with its collector on.
    assert gc.isenabled()
    assert (folder / "report.html").is_file() and not (out / "mlflow.db").exists()  # MLflow only
    return read_table(folder / "openvqa_image.csv"), read_table(folder / "verdicts.csv")


def test_one_seed_gives_exact_k_over_n_deltas_and_verdicts(mlflow_server, tmp_path):
    seeds = (0,)
    results = log_grid(mlflow_server, "exact-one", seeds)
    table, verdicts = report(tmp_path, mlflow_server, "exact-one", seeds)
    for variant in SKILL:
        items = results[(variant, 0)]
        for cat, n in CATEGORIES.items():
            assert table[variant][cat] == f"{sum(ok for c, ok in items.values() if c == cat)}/{n}"
        assert table[variant]["overall %"] == f"{100 * sum(ok for _, ok in items.values()) / len(items):.1f}"
    mean, low, high = bootstrap(results, seeds)
    assert table["w_cross_attn"]["Δ vs lynx [95% CI]"] == f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"
    assert table["lynx"]["Δ vs lynx [95% CI]"] == "—"
    expected = "reproduced" if high < 0 else "opposite" if low > 0 else "inconclusive"  # the paper: lower
    assert verdicts["w_cross_attn"]["verdict"] == expected == "reproduced"
    assert "Numerics differ" not in (tmp_path / "out" / "reports" / "exact-one" / "report.md").read_text()


def test_runs_trained_with_other_thread_counts_are_flagged(mlflow_server, tmp_path):
    """Thread count is not part of a run's key but changes its sums: a study mixing them says so at the top."""
    log_grid(mlflow_server, "mixed-threads", (0,), threads={("w_cross_attn", 0): 2})
    report(tmp_path, mlflow_server, "mixed-threads", (0,))
    text = (tmp_path / "out" / "reports" / "mixed-threads" / "report.md").read_text()
    assert "**Numerics differ between these runs**: torch thread counts 1, 2." in text
    assert text.index("Numerics differ") < text.index("## Verdicts")


def test_several_seeds_give_exact_means_spreads_and_intervals(mlflow_server, tmp_path):
    seeds = (0, 1, 2)
    results = log_grid(mlflow_server, "exact-three", seeds)
    table, verdicts = report(tmp_path, mlflow_server, "exact-three", seeds)
    for variant in SKILL:
        for cat, n in CATEGORIES.items():
            per_seed = [sum(ok for c, ok in results[(variant, s)].values() if c == cat) / n for s in seeds]
            assert table[variant][cat] == f"{100 * np.mean(per_seed):.1f}%"
        overall = [100 * np.mean([ok for _, ok in results[(variant, s)].values()]) for s in seeds]
        assert table[variant]["overall %"] == f"{np.mean(overall):.1f} ± {np.std(overall, ddof=1):.1f}"
    mean, low, high = bootstrap(results, seeds)
    assert table["w_cross_attn"]["Δ vs lynx [95% CI]"] == f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"
    assert verdicts["w_cross_attn"]["Δ mechanism [95% CI]"] == f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"
    assert verdicts["w_cross_attn"]["verdict"] == "reproduced"
    paper = 31.79 - 76.16  # the paper's own image difference, in its variant file
    size = "inside" if low <= paper <= high else "smaller" if paper < low else "larger"
    assert verdicts["w_cross_attn"]["paper's Δ image vs the CI"] == size


def test_an_unreachable_tracking_server_is_one_line(tmp_path, capsys):
    experiment = tmp_path / "e.yaml"
    experiment.write_text("name: e\nscale: small\nbaseline: lynx\nvariants: []\n")
    assert main(["--out", str(tmp_path), "report", str(experiment), "--tracking-uri", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ablate: error: cannot reach the MLflow tracking server http://127.0.0.1:9")
    assert "\n" not in err


def test_unfinished_runs_are_listed_as_such_and_left_out_of_the_tables(mlflow_server, tmp_path):
    log_grid(mlflow_server, "unfinished", (0,))
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("unfinished").experiment_id
    parent = client.search_runs([exp], "tags.`ablate.kind` = 'grid'")[0]
    keys = parent.data.tags["ablate.run_keys"].split(",")
    states = {"w_llama": ("FAILED", {"ablate.error": "out of memory"}), "wo_high_res": ("KILLED", {"ablate.pruned": "1"}),
              "w_noisy_data": ("RUNNING", {}), "wo_diverse_prompts": ("SCHEDULED", {})}
    for variant, (status, tags) in states.items():
        run = resolve(variant, "small", seed=0)
        keys.append(run.key)
        run_id = client.create_run(exp, tags={**run_tags(run), PARENT_TAG: parent.info.run_id,
                                              "ablate.grid": "unfinished", **tags}).info.run_id
        client.update_run(run_id, status=status)
    # A run the grid scheduled but no worker started carries only the grid's tags; it is the newest run of its
    # variant, and the variant's paper note and verdict must still come from its finished run.
    pending = resolve("w_cross_attn", "small", seed=1)
    keys.append(pending.key)
    run_id = client.create_run(exp, tags={PARENT_TAG: parent.info.run_id, "ablate.run_key": pending.key,
                                          "ablate.variant": "w_cross_attn", "ablate.kind": "run"}).info.run_id
    client.update_run(run_id, status="SCHEDULED")
    client.set_tag(parent.info.run_id, "ablate.run_keys", ",".join([*keys, "0123456789ab"]))
    table, verdicts = report(tmp_path, mlflow_server, "unfinished", (0,))
    assert table["w_cross_attn"]["paper"] == "w/ cross-attn (image 31.79, video 51.35)" and "w_cross_attn" in verdicts
    for variant in states:  # no numbers from unfinished runs: their rows are dashes
        assert table[variant]["overall %"] == "—" and table[variant]["OCR"] == "—"
    text = (tmp_path / "out" / "reports" / "unfinished" / "report.md").read_text()
    section = text[text.index("## Runs without results"):]
    assert "`w_llama` seed 0: failed: out of memory" in section
    assert "`wo_high_res` seed 0: pruned" in section
    assert "`w_noisy_data` seed 0: running, or stale if its process died" in section
    assert "`wo_diverse_prompts` seed 0: pending" in section
    assert "`w_cross_attn` seed ?: pending" in section
    assert "1 run(s) of the grid have no MLflow run yet" in section


def test_runs_scored_on_a_larger_benchmark_get_their_own_verdict_table(mlflow_server, tmp_path):
    """After `ablate eval RUN --benchmark-scale 10` on every run, the report adds the verdicts measured on the
    larger benchmark's rows (here a 10x image split where the variant is as good as the baseline) and the paper's
    video column on the 10x video split (where it is worse), exactly as computed from them; while a run is still to
    do, it says so instead."""
    seeds = (0, 1)
    rng = np.random.default_rng(5)
    image = {(v, s): {f"openvqa_image_10x-{cat}-{i:04d}": (cat, bool(rng.random() < 0.5))
                      for cat, n in CATEGORIES.items() for i in range(10 * n)} for v in SKILL for s in seeds}
    video = {(v, s): {f"openvqa_video_10x-{cat}-{i:04d}": (cat, bool(rng.random() < (0.6 if v == "lynx" else 0.3)))
                      for cat, n in (("Action", 60), ("Others", 20)) for i in range(n)} for v in SKILL for s in seeds}
    log_grid(mlflow_server, "larger-all", seeds, {run: {**image[run], **video[run]} for run in image})
    (tmp_path / "all").mkdir()
    _, verdicts = report(tmp_path / "all", mlflow_server, "larger-all", seeds)
    folder = tmp_path / "all" / "out" / "reports" / "larger-all"
    on_larger = read_table(folder / "verdicts_larger_benchmark.csv")
    mean, low, high = bootstrap(image, seeds)
    assert on_larger["w_cross_attn"]["Δ mechanism [95% CI]"] == f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"
    assert on_larger["w_cross_attn"]["verdict"] == ("inconclusive" if low < 0 < high else "reproduced")
    assert verdicts["w_cross_attn"]["verdict"] == "reproduced"  # the grid's own benchmark: unchanged
    text = (folder / "report.md").read_text()
    assert "Verdicts on 10 times the benchmark" in text and "measured on `openvqa_video_10x`" in text
    column = read_table(folder / "video_column_larger_benchmark.csv")["w_cross_attn"]
    mean, low, high = bootstrap(video, seeds)
    assert column["Δ Open-VQA video [95% CI]"] == f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"
    assert column["paper Δ video"] == f"{51.35 - 66.22:+.1f}"  # the paper's own, from the variant files
    assert column["paper's direction"] == "reproduced" and high < 0
    assert not (folder / "video_column.csv").exists()  # the grid's own benchmark scored no video here

    # One run not yet scored on the 10x video split: the image table stands, the video column waits for it.
    log_grid(mlflow_server, "larger-video-some", seeds,
             {run: {**image[run], **(video[run] if run != ("lynx", 1) else {})} for run in image})
    (tmp_path / "video-some").mkdir()
    report(tmp_path / "video-some", mlflow_server, "larger-video-some", seeds)
    folder = tmp_path / "video-some" / "out" / "reports" / "larger-video-some"
    assert (folder / "verdicts_larger_benchmark.csv").exists()
    assert not (folder / "video_column_larger_benchmark.csv").exists()
    assert "3 of 4 finished runs have been scored on `openvqa_video_10x`" in (folder / "report.md").read_text()

    log_grid(mlflow_server, "larger-some", seeds, {("lynx", 0): image[("lynx", 0)]})
    (tmp_path / "some").mkdir()
    report(tmp_path / "some", mlflow_server, "larger-some", seeds)
    folder = tmp_path / "some" / "out" / "reports" / "larger-some"
    assert not (folder / "verdicts_larger_benchmark.csv").exists()
    assert "1 of 4 finished runs have been scored" in (folder / "report.md").read_text()
