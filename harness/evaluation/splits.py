"""The benchmark splits, declared once: name, kind, decoding settings, report title and report columns.

The evaluation loop (which decoding and which scorer), config validation (`eval.splits`) and the report (section
titles, the columns of non-category splits, the order of sections) all read `SPLITS`. Nothing here imports torch,
so validating a config stays fast. The items themselves are written by the world (`harness/data/world.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.errors import AblateError, did_you_mean, one_of


@dataclass(frozen=True)
class Split:
    """One benchmark split."""

    name: str
    kind: str  # "openvqa" (open answers judged per category), "mme" (yes/no pairs), "probes" (instructions)
    generation: str  # which `EvalConfig` decoding settings it uses: "openvqa", "short" or "long"
    title: str  # the report's section title
    columns: tuple[str, ...] = ()  # non-category splits: the report's metrics, first one's Δ shown; "*x" = all "…x"


SPLITS: dict[str, Split] = {s.name: s for s in (  # in report order
    Split("openvqa_image", "openvqa", "openvqa", "Open-VQA, image (the paper's Table 3 layout)"),
    Split("openvqa_image_10x", "openvqa", "openvqa", "Open-VQA, image, 10x split (more statistical power)"),
    Split("openvqa_video", "openvqa", "openvqa", "Open-VQA, video"),
    Split("mme", "mme", "short", "MME-style yes/no pairs (score = acc + acc+, max 200 per subtask)",
          ("score", "acc", "*/score")),
    Split("probes", "probes", "long", "Instruction-following probes",
          ("short_answer_words", "yes_no_compliance", "one_word_compliance", "caption_junk_rate")),
)}
KNOWN_SPLITS = tuple(SPLITS)


def get_split(name: str) -> Split:
    if name not in SPLITS:
        raise AblateError(f"unknown evaluation split '{name}'{did_you_mean(name, SPLITS)}; known: {one_of(SPLITS)}")
    return SPLITS[name]


def parse_splits(splits: str | Iterable[str]) -> list[str]:
    """'a, b' or ['a', 'b'] -> ['a', 'b'], each checked against the known split names."""
    names = [s.strip() for s in (splits.split(",") if isinstance(splits, str) else splits) if s.strip()]
    for name in names:
        get_split(name)
    return names
