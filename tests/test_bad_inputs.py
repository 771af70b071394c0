"""Every bad input in tests/bad_inputs/ gets one clear line, exit code 2, no traceback, and writes nothing.

Each case is an experiment file run with `ablate --out OUT grid run CASE.yaml`. Its leading comments say what to
expect and how to run it:
- `# expect: REGEX`: searched in the single stderr line;
- `# args: ...`: extra command-line arguments after the file (`key=value` overrides, `--seeds`);
- `# setup: corrupt-store`: OUT already holds an `mlflow.db` of garbage bytes;
- `# setup: out-under-a-file`: OUT is a path below a regular file, so it cannot be created;
- `# setup: name-taken`: OUT holds a grid of the same name from another experiment file, with other runs;
- `# setup: truncated-shard`: the working folder holds `shards/cut-000000.tar`, a tar cut off mid-sample.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from harness.cli import main
from harness.tracking import Store, experiment_id, start_parent

CASES = Path(__file__).parent / "bad_inputs"


def header(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        if not line.startswith("# "):
            break
        key, _, value = line[2:].partition(": ")
        fields[key] = value
    return fields


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")} if folder.exists() else set()


def test_the_corpus_has_at_least_30_cases_each_with_an_expectation():
    cases = sorted(CASES.glob("*.yaml"))
    assert len(cases) >= 30
    assert all("expect" in header(c) for c in cases), [c.name for c in cases if "expect" not in header(c)]


@pytest.mark.parametrize("case", sorted(p.stem for p in CASES.glob("*.yaml")))
def test_a_bad_input_gets_one_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ABLATE_PATHS", str(tmp_path / "paths.yaml"))  # no paths file unless a case makes one
    source = CASES / f"{case}.yaml"
    spec = header(source)
    experiment = tmp_path / "exp.yaml"
    experiment.write_bytes(source.read_bytes())
    out = tmp_path / "out"
    if spec.get("setup") == "corrupt-store":
        out.mkdir()
        (out / "mlflow.db").write_bytes(b"this is not a database\x00\xff" * 64)
    elif spec.get("setup") == "out-under-a-file":
        (tmp_path / "a-file").write_text("")
        out = tmp_path / "a-file" / "out"
    elif spec.get("setup") == "name-taken":
        store = Store(out)
        client = store.create()
        start_parent(client, experiment_id(client, store, "x"), "x", tags={
            "ablate.experiment_path": str(tmp_path / "elsewhere.yaml"), "ablate.run_keys": "0123456789abcdef"})
    elif spec.get("setup") == "truncated-shard":
        import io
        import tarfile

        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in (("s0.txt", b"a caption"), ("s0.png", b"\x89PNG" + b"x" * 3000)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        (tmp_path / "shards").mkdir()
        (tmp_path / "shards" / "cut-000000.tar").write_bytes(buffer.getvalue()[:2000])
        monkeypatch.chdir(tmp_path)
    before = files_under(out)
    code = main(["--out", str(out), "grid", "run", str(experiment), *shlex.split(spec.get("args", ""))])
    stdout, stderr = capsys.readouterr()
    lines = stderr.strip().splitlines()
    assert code == 2, (code, stderr)
    assert len(lines) == 1 and lines[0].startswith("ablate: error: "), stderr
    assert "Traceback" not in stderr + stdout
    assert re.search(spec["expect"], lines[0]), lines[0]
    assert files_under(out) == before, sorted(files_under(out) - before)
