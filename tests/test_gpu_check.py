"""benchmarks/gpu_check.py runs on the CPU at tiny scale, without mlflow, optuna or webdataset installed (the GPU
machine has none of them), and its device-residency check passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WITHOUT = """
import importlib.machinery, runpy, sys
class Missing:  # as if mlflow, optuna and webdataset were not installed
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, cls) if name.split('.')[0] in ('mlflow', 'optuna', 'webdataset') else None
    @staticmethod
    def create_module(spec):
        raise ImportError('No module named ' + repr(spec.name))
    @staticmethod
    def exec_module(module):
        pass
sys.meta_path.insert(0, Missing)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


@pytest.mark.slow  # builds and trains two tiny models in a subprocess: about 35 s
def test_gpu_check_runs_on_the_cpu_without_the_tracking_stack(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT, str(ROOT / "benchmarks" / "gpu_check.py"), "--scale", "tiny", "--device",
         "cpu", "--variants", "lynx", "--steps", "2", "--gen-items", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = json.loads(out.read_text())
    assert result["stays_on_device"] and result["device_after_fits"] == ["cpu", "cpu"]
    assert result["step_s"] > 0 and result["tflop_per_step"] > 0 and result["gen_s_per_item"] > 0
    assert result["params_by_dtype"] == {"float32": round(result["params_B"] * 1e9)}  # 32-true at tiny: no bf16
    assert "lynx @ tiny on cpu" in done.stdout
