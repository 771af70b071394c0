"""The `ablate` command line: listing and showing variants, and one clear line for every kind of bad input."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.cli import main

REPO = Path(__file__).resolve().parent.parent


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_variants_list_shows_name_axis_description(capsys):
    code, out, _ = run_cli(capsys, "variants", "list")
    assert code == 0
    first = out.splitlines()[0].split()
    assert first[:2] == ["lynx", "baseline"]
    assert any(line.split()[:2] == ["w_llama", "network.llm"] for line in out.splitlines())


def test_variants_show_prints_resolved_config_with_hash(capsys):
    code, out, _ = run_cli(capsys, "variants", "show", "lynx", "--seed", "3", "train.finetune.steps=9")
    assert code == 0
    assert "config hash" in out and "steps: 9" in out and "seed: 3" in out
    assert "total" in out and "trainable in finetuning" in out


def test_variants_diff_prints_exactly_the_delta(capsys):
    code, out, _ = run_cli(capsys, "variants", "diff", "w_llama")
    assert code == 0
    assert out.splitlines()[1:] == [
        "  model.llm.role    'instruct' -> 'base'",
        "  model.llm.source  'zoo:llm-instruct' -> 'zoo:llm-base'",
    ]


def _experiment(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(text))
    return path


BAD_INPUTS = {
    "malformed yaml": ("name: x\nbaseline: lynx\nvariants: [a, b\n", r"exp\.yaml: line \d+, column \d+: malformed YAML"),
    "unknown variant": ("name: x\nbaseline: lynx\nvariants: [w_lama]\n", r"unknown variant 'w_lama' \(did you mean 'w_llama'\?\)"),
    "misspelt key": ("name: x\nbaseline: lynx\noverrides: {train.batch_sise: 1}\n",
                     r"exp\.yaml: unknown config key 'train\.batch_sise' \(did you mean 'train\.batch_size'\?\)"),
    "wrong type": ("name: x\nbaseline: lynx\noverrides: {train.batch_size: lots}\n",
                   r"exp\.yaml: train\.batch_size must be an integer, got 'lots' \(str\)"),
    "unknown experiment key": ("name: x\nbaseline: lynx\nseed: [1]\n", r"unknown experiment key 'seed' \(did you mean 'seeds'\?\)"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_experiment_gets_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    text, pattern = BAD_INPUTS[case]
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "--out", str(out_dir), "grid", "run", str(_experiment(tmp_path, text)))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("ablate: error: ")
    assert re.search(pattern, err), err
    assert not out_dir.exists()


def test_missing_experiment_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "--out", str(tmp_path / "out"), "grid", "run", str(tmp_path / "nope.yaml"))
    assert code == 2 and "experiment file not found" in err
    assert not (tmp_path / "out").exists()


def test_bad_cli_override(capsys, tmp_path):
    code, _, err = run_cli(capsys, "--out", str(tmp_path / "o"), "grid", "run", str(REPO / "experiments/smoke.yaml"),
                           "data.prompts=divers")
    assert code == 2 and "data.prompts must be one of 'diverse', 'fixed', got 'divers'" in err


def test_missing_checkpoint_path_fails_before_anything_is_written(capsys, tmp_path):
    code, _, err = run_cli(capsys, "--out", str(tmp_path / "o"), "grid", "run", str(REPO / "experiments/smoke.yaml"),
                           "model.llm.source=/models/nothing")
    assert code == 2 and "model.llm.source: checkpoint path does not exist: /models/nothing" in err
    assert not (tmp_path / "o").exists()


def test_local_source_without_a_paths_entry_names_the_file(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATE_PATHS", str(tmp_path / "paths.yaml"))
    (tmp_path / "paths.yaml").write_text("llm-base: /somewhere\n")
    code, _, err = run_cli(capsys, "--out", str(tmp_path / "o"), "grid", "run", str(REPO / "experiments/smoke.yaml"),
                           "model.llm.source=local:llm-instruct")
    assert code == 2 and "needs an entry 'llm-instruct: /path/to/checkpoint' in the paths file" in err


def test_report_on_a_corrupt_store_names_it_and_says_how_to_recover(capsys, tmp_path):
    (tmp_path / "mlflow.db").write_bytes(b"\x00garbage" * 100)
    code, _, err = run_cli(capsys, "--out", str(tmp_path), "report", str(REPO / "experiments/smoke.yaml"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is not a readable SQLite database" in err and "mv " in err and "artifacts" in err


def test_report_without_store_is_a_clear_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "--out", str(tmp_path / "none"), "report", str(REPO / "experiments/smoke.yaml"))
    assert code == 2 and "no MLflow store" in err


def test_variant_file_raising_on_import_is_named_by_the_cli(tmp_path):
    # A `variants` package earlier on sys.path shadows the shipped one: the CLI must name the broken file.
    pkg = tmp_path / "variants"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "lynx.py").write_text((REPO / "variants/lynx.py").read_text())
    (pkg / "broken.py").write_text("import no_such_module_anywhere\n")
    env = {"PYTHONPATH": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "variants", "list"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ablate: error: variants/broken.py: variant file failed to import: "
        "ModuleNotFoundError: No module named 'no_such_module_anywhere' (line 1)"
    ]


def test_seeds_option_overrides_the_files_seeds_and_is_checked(capsys, tmp_path):
    from harness.experiment import load_experiment

    assert load_experiment(REPO / "experiments/lynx_table3.yaml", seeds="0,1").seeds == (0, 1)
    assert load_experiment(REPO / "experiments/lynx_table3.yaml").seeds == (0, 1, 2)
    code, _, err = run_cli(capsys, "--out", str(tmp_path / "o"), "grid", "run",
                           str(REPO / "experiments/smoke.yaml"), "--seeds", "0,one")
    assert code == 2 and "--seeds '0,one': expected comma-separated integers" in err
    assert not (tmp_path / "o").exists()


def test_threads_set_this_process_and_the_grid_workers(capsys, monkeypatch):
    """`--threads N` sets torch's threads here and, through $ABLATE_THREADS, in every grid worker; without it a
    grid shares the cores out among its workers."""
    import torch

    from harness.grid import worker_threads

    monkeypatch.delenv("ABLATE_THREADS", raising=False)
    assert worker_threads(1) is None
    assert worker_threads(2) == max(1, (os.cpu_count() or 1) // 2)
    before = torch.get_num_threads()
    try:
        code, out, _ = run_cli(capsys, "--threads", "1", "variants", "list")
        assert code == 0 and "lynx" in out
        assert torch.get_num_threads() == 1
        assert worker_threads(2) == 1 and worker_threads(1) == 1
    finally:
        torch.set_num_threads(before)
        monkeypatch.delenv("ABLATE_THREADS", raising=False)


@pytest.mark.parametrize("given", ["0", "two", "-1"])
def test_a_bad_thread_count_is_refused_with_what_to_give(given, capsys, monkeypatch):
    monkeypatch.delenv("ABLATE_THREADS", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["--threads", given, "variants", "list"])
    assert exit_.value.code == 2
    assert f"'{given}' is not a number of threads: give a whole number of at least 1" in capsys.readouterr().err
    monkeypatch.setenv("ABLATE_THREADS", given)  # the same check for the environment's default
    with pytest.raises(SystemExit):
        main(["variants", "list"])
    assert "is not a number of threads" in capsys.readouterr().err
