"""The training step with and without its two savings, interleaved in one process (this machine drifts by a
fifth within a day, so only a side-by-side ratio means anything):

    python benchmarks/step_savings.py [--scale small] [--threads 1] [--steps 14] [--rounds 3]

- the output head runs only where a label is supervised (`harness.model.llm.supervised_loss`), against
  transformers' full forward with labels;
- the connector projects keys and values of real vision tokens only (`CrossAttention.keys_values`), against
  projecting every token, padding frames included.
Both give the same loss and gradients (tests/test_model.py); this measures what they save. Stop 21: 262 -> 222 ms
a step at `small`, cached features, one thread (1.18x).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    from bench import Bench, side_by_side_args

    args = side_by_side_args(__doc__)

    import harness.model.mllm as mllm
    from harness.model.connectors import CrossAttention

    bench = Bench(args.scale, Path(tempfile.mkdtemp(prefix="ablate-savings-")))
    saving = {"loss": mllm.supervised_loss, "keys": CrossAttention.keys_values}
    without = {"loss": lambda llm, inputs, labels: llm(**inputs, labels=labels).loss,
               "keys": lambda self, x, mask: self.to_kv(self.norm_kv(x))}
    times: dict[str, list[float]] = {"with the savings": [], "without": []}
    for _ in range(args.rounds):
        for name, use in (("without", without), ("with the savings", saving)):
            mllm.supervised_loss, CrossAttention.keys_values = use["loss"], use["keys"]
            times[name] += bench.plain(bench.cached, args.steps, bench.cfg.train.precision)[3:]
    old, new = (statistics.median(times[k]) for k in ("without", "with the savings"))
    print(f"{args.scale}, {args.threads} thread(s), cached features: {old * 1e3:.0f} -> {new * 1e3:.0f} ms a step "
          f"({old / new:.2f}x)")


if __name__ == "__main__":
    main()
