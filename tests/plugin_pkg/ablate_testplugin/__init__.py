"""An example ablate plugin: one of each kind a package can add."""

import random

from harness.data.benchmark import item_json
from harness.data.scenes import image_item
from harness.evaluation.splits import Split
from harness.variant import Variant

# ---- a connector: one visual token, the masked mean of the vision tokens -----------------------------------------


def avgpool(cfg, vision_dim, llm_dim):
    from torch import nn  # a connector factory may import torch: it runs only when a model is built

    class AvgPool(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(vision_dim, llm_dim)

        def forward(self, x, mask):
            weights = mask.to(x.dtype)[..., None]
            pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1)
            return self.proj(pooled)[:, None, :], mask.any(1, keepdim=True)

    return AvgPool()


# ---- a variant that uses it ---------------------------------------------------------------------------------------

W_AVGPOOL = Variant(
    name="w_avgpool",
    baseline="lynx",
    axis="network.connector",
    description="one visual token: the masked mean of the vision tokens (plugin connector)",
    delta={"model.connector.kind": "avgpool"},
    mechanism="count_only/acc",
)

# ---- a benchmark split: counting questions only ------------------------------------------------------------------

COUNT_ITEMS = 12  # at benchmark_scale 1


def count_items(world):
    """(scene, item json) of each counting question, drawn from the world's seed (`world` is its WorldConfig)."""
    out = []
    for i in range(COUNT_ITEMS * world.benchmark_scale):
        scene, question, answer = image_item(random.Random(f"{world.seed}/count_only/{i}"), "Count")
        out.append((scene, item_json("count_only", "vqa", f"count_only-{i:04d}", "Count", question,
                                     f"{question} Answer with a number.", answer)))
    return out


COUNT_ONLY = Split("count_only", "openvqa", "openvqa", "Counting only (a plugin split)", items=count_items)

# ---- judges --------------------------------------------------------------------------------------------------------


class LenientJudge:
    def __call__(self, question, prediction, reference):
        return reference.lower() in prediction.lower()


class PrefixJudge:
    """Configured and batched: right when the answer starts with the reference (case folded unless strict);
    each verdict comes with the judge's raw output."""

    batches = []  # the size of every batch it was given

    def __init__(self, strict=False):
        self.strict = strict

    def __call__(self, question, prediction, reference):
        return self.batch([(question, prediction, reference)])[0][0]

    def batch(self, items):
        PrefixJudge.batches.append(len(items))
        fold = (lambda t: t) if self.strict else str.lower
        return [(fold(p).startswith(fold(r)), f"{'strict' if self.strict else 'folded'}: {p!r} vs {r!r}")
                for _, p, r in items]
