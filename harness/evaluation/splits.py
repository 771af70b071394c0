"""The benchmark splits, declared once: name, kind, decoding settings, report title, report columns and, for a
split from a user's package, its items.

The evaluation loop (which decoding and which scorer), config validation (`eval.splits`), the world (a plugin
split's items), the report (section titles, the columns of non-category splits, the order of sections) and the
grid's progress line all read `SPLITS`. Nothing here imports torch, so validating a config stays fast.

The built-in splits' items are written by the world (`harness/data/world.py`, `harness/data/benchmark.py`), except
`openvqa_video_10x`'s, which come as a split's own items do (below), so any finished run can be scored on them. A
package adds a split through the `ablate.splits` entry-point group, naming a `Split` whose `items` makes them:

```toml
[project.entry-points."ablate.splits"]
count_only = "my_package.splits:COUNT_ONLY"
```

```python
def count_items(world):                 # world: the WorldConfig; -> [(scene or video, item json)]
    rng = random.Random(f"{world.seed}/count_only")
    out = []
    for i in range(40 * world.benchmark_scale):
        scene, question, answer = image_item(rng, "Count")          # harness.data.scenes
        out.append((scene, item_json("count_only", "vqa", f"count_only-{i:04d}", "Count", question, question,
                                     answer)))                     # harness.data.benchmark
    return out

COUNT_ONLY = Split("count_only", "openvqa", "openvqa", "Counting only", items=count_items, items_version=1)
```

The world renders each scene at its resolution (a video with the world's `num_frames`) and writes the split beside
its own datasets when a run is first evaluated on it (`harness/data/world.py: with_splits`). `items_version` names
that folder and is part of the evaluation key, so bumping it whenever the items change scores every finished run
again on the new items. A plugin split is scored by its `kind`'s scorer, like a built-in one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from harness.errors import AblateError, RegistryError, did_you_mean, one_of
from harness.registry import Registry

KINDS = ("openvqa", "mme", "probes")  # each kind has a scorer in harness/evaluation/scoring.py
GENERATIONS = ("openvqa", "short", "long")  # the `EvalConfig` decoding settings a split can use
NAME = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Split:
    """One benchmark split."""

    name: str
    kind: str  # "openvqa" (open answers judged per category), "mme" (yes/no pairs), "probes" (instructions)
    generation: str  # which `EvalConfig` decoding settings it uses: "openvqa", "short" or "long"
    title: str  # the report's section title
    columns: tuple[str, ...] = ()  # non-category splits: the report's metrics, first one's Δ shown; "*x" = all "…x"
    # A plugin split's items: (the world's WorldConfig) -> [(scene or video, item json)]; None for the world's own.
    items: Callable[[Any], Iterable[tuple[dict, dict]]] | None = None
    items_version: int = 1  # bump when `items` changes: the world writes each version once
    short: str = ""  # the grid's progress line: its label before the split's accuracy (default: the name)

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise AblateError(f"split name {self.name!r} must be letters, digits and _ (it names metrics "
                              "`eval/<split>/...` and a folder, and `eval.splits` lists names with commas)")
        if self.kind not in KINDS:
            raise AblateError(f"split '{self.name}': kind must be one of {one_of(KINDS)}, got '{self.kind}'")
        if self.generation not in GENERATIONS:
            raise AblateError(f"split '{self.name}': generation must be one of {one_of(GENERATIONS)}, got "
                              f"'{self.generation}'")


def _video_10x_items(world):
    """`openvqa_video_10x`'s items (imported when the split is first written: this module stays light)."""
    from harness.data.benchmark import openvqa_video_10x_items

    return openvqa_video_10x_items(world)


BUILT_IN = (  # in report order
    Split("openvqa_image", "openvqa", "openvqa", "Open-VQA, image (the paper's Table 3 layout)",
          short="Open-VQA image"),
    Split("openvqa_image_10x", "openvqa", "openvqa", "Open-VQA, image, 10x split (more statistical power)",
          short="image 10x"),
    Split("openvqa_video", "openvqa", "openvqa", "Open-VQA, video", short="video"),
    Split("openvqa_video_10x", "openvqa", "openvqa", "Open-VQA, video, 10x split (more statistical power)",
          items=_video_10x_items, items_version=1, short="video 10x"),
    Split("mme", "mme", "short", "MME-style yes/no pairs (score = acc + acc+, max 200 per subtask)",
          ("score", "acc", "*/score"), short="MME acc"),
    Split("probes", "probes", "long", "Instruction-following probes",
          ("short_answer_words", "yes_no_compliance", "one_word_compliance", "caption_junk_rate")),
)
SPLITS: Registry[Split] = Registry("split", "ablate.splits", {s.name: s for s in BUILT_IN})


def get_split(name: str) -> Split:
    """The declaration of split `name` (built-in or from a plugin); an unknown one fails with the known names."""
    if name not in SPLITS:
        known = known_splits()
        raise AblateError(f"unknown evaluation split '{name}'{did_you_mean(name, known)}; known: {one_of(known)}")
    split = SPLITS.get(name)  # a plugin that fails to load says so in one line
    if not isinstance(split, Split) or split.name != name:
        raise RegistryError(f"split '{name}' ({SPLITS.origin(name).text()}) must be a harness.evaluation.splits."
                            f"Split named '{name}', got {split!r:.80}")
    return split


def known_splits() -> list[str]:
    """Every split name in report order: the built-ins as declared, then plugin splits by name."""
    return SPLITS.declared_order()


def declared(name: str) -> Split | None:
    """The declaration of split `name`, or None when no installed package declares it in working order (a report
    of a store scored on a plugin split that is not installed here)."""
    try:
        return get_split(name)
    except AblateError:
        return None


def split_title(name: str) -> str:
    """The report's section title of a split; its name when it is not declared here."""
    split = declared(name)
    return split.title if split else name


def split_columns(name: str) -> tuple[str, ...]:
    """The report's metric columns of a non-category split (() when it shows every metric)."""
    split = declared(name)
    return split.columns if split else ()


def headline_scores(metrics: dict[str, float]) -> str:
    """'Open-VQA image 37.9%, video 50.9%, MME acc 33.6%': the accuracy of each scored split that has one (not the
    probes), labelled by its declaration, in report order."""
    shown = [(declared(name), name) for name in known_splits() if f"eval/{name}/acc" in metrics]
    return ", ".join(f"{(split and split.short) or name} {metrics[f'eval/{name}/acc']:.1f}%" for split, name in shown)


def item_versions(names: Iterable[str]) -> dict[str, int]:
    """{split: items_version} of the splits among `names` that bring their own items (part of the evaluation key:
    new items score finished runs again)."""
    return {name: split.items_version for name in names if (split := get_split(name)).items is not None}


def parse_splits(splits: str | Iterable[str]) -> list[str]:
    """'a, b' or ['a', 'b'] -> ['a', 'b'], each checked against the known split names."""
    names = [s.strip() for s in (splits.split(",") if isinstance(splits, str) else splits) if s.strip()]
    for name in names:
        get_split(name)
    return names
