"""Scores from prediction rows: Open-VQA k/N per category, MME acc + acc+, instruction-following probes.

Pure functions on the prediction rows of docs/contracts.md (one dict per item: `keys`, `split`, `category`,
`question`, `answer`, `pair_id`, `probe`, `prediction`, `correct`). Metric names follow the contract:
`eval/<split>/<category>/{acc,k,n}`, `eval/<split>/{acc,k,n}`, `eval/mme/<subtask>/score` (plus `acc`, `acc_plus`,
`n`), `eval/mme/score`, `eval/probes/<name>`. Accuracies and rates are in percent.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from harness.data.vocab import NOISE_TOKENS
from harness.errors import AblateError
from harness.evaluation.judges import Judge, detect_yes_no, normalise
from harness.evaluation.splits import BUILT_IN, SPLITS, declared, get_split, known_splits

Row = dict[str, Any]

# The paper's Table 3 column order; categories it does not name follow alphabetically.
PAPER_CATEGORY_ORDER = ["ocr", "count", "reason", "place", "color", "colour", "spatial", "action", "action (yes/no)",
                        "others"]
_WORD = re.compile(r"[A-Za-z0-9]+(?:['\-][A-Za-z0-9]+)*")


def _pct(k: int, n: int) -> float:
    return 100.0 * k / n if n else 0.0


def _of_split(rows: Iterable[Row], split: str) -> list[Row]:
    return [r for r in rows if r["split"] == split]


def _ordered(categories: Iterable[str]) -> list[str]:
    def rank(c: str) -> tuple[int, str]:
        low = c.lower()
        return (PAPER_CATEGORY_ORDER.index(low) if low in PAPER_CATEGORY_ORDER else len(PAPER_CATEGORY_ORDER), low)

    return sorted(set(categories), key=rank)


def category_counts(rows: Iterable[Row], split: str) -> dict[str, tuple[int, int]]:
    """Category -> (k right, N items) for one split, in the paper's column order."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in _of_split(rows, split):
        counts[row["category"]][0] += bool(row["correct"])
        counts[row["category"]][1] += 1
    return {c: (counts[c][0], counts[c][1]) for c in _ordered(counts)}


def score_openvqa(rows: Iterable[Row], split: str) -> dict[str, float]:
    """Per category k, n, acc (%) and overall acc (%), k, n for one Open-VQA split; {} without rows."""
    counts = category_counts(rows, split)
    if not counts:
        return {}
    metrics: dict[str, float] = {}
    for category, (k, n) in counts.items():
        metrics[f"eval/{split}/{category}/k"] = k
        metrics[f"eval/{split}/{category}/n"] = n
        metrics[f"eval/{split}/{category}/acc"] = _pct(k, n)
    k_all = sum(k for k, _ in counts.values())
    n_all = sum(n for _, n in counts.values())
    metrics.update({f"eval/{split}/k": k_all, f"eval/{split}/n": n_all, f"eval/{split}/acc": _pct(k_all, n_all)})
    return metrics


def score_mme(rows: Iterable[Row], split: str = "mme") -> dict[str, float]:
    """Per subtask (the row's category) acc, acc+ and score = acc + acc+ (max 200); totals over subtasks.

    acc+ is MME's: the share of images (`pair_id`, else the item key) whose two questions are BOTH right; an
    image with fewer than two questions can never count.
    """
    by_task: dict[str, list[Row]] = defaultdict(list)
    for row in _of_split(rows, split):
        by_task[row["category"]].append(row)
    metrics: dict[str, float] = {}
    for task in sorted(by_task):
        images: dict[str, list[bool]] = defaultdict(list)
        for row in by_task[task]:
            images[row.get("pair_id") or row["keys"]].append(bool(row["correct"]))
        task_rows = by_task[task]
        acc = _pct(sum(bool(r["correct"]) for r in task_rows), len(task_rows))
        acc_plus = _pct(sum(len(v) >= 2 and all(v) for v in images.values()), len(images))
        metrics[f"eval/{split}/{task}/n"] = len(task_rows)
        metrics[f"eval/{split}/{task}/acc"] = acc
        metrics[f"eval/{split}/{task}/acc_plus"] = acc_plus
        metrics[f"eval/{split}/{task}/score"] = acc + acc_plus
    if by_task:
        all_rows = [r for task_rows in by_task.values() for r in task_rows]
        metrics[f"eval/{split}/score"] = sum(metrics[f"eval/{split}/{t}/score"] for t in by_task)
        metrics[f"eval/{split}/acc"] = _pct(sum(bool(r["correct"]) for r in all_rows), len(all_rows))
    return metrics


def words(text: str) -> list[str]:
    """The words of a text (runs of letters/digits, inner apostrophes and hyphens kept)."""
    return _WORD.findall(text)


def is_yes_no(text: str) -> bool:
    """Is the answer exactly 'yes' or 'no', ignoring case, punctuation and surrounding space?"""
    return [w.lower() for w in words(text)] in (["yes"], ["no"])


SHORT_ANSWER_MAX_WORDS = 3  # "Give a short answer." is obeyed by an answer of at most this many words


def obeys_format(probe: str | None, text: str) -> bool | None:
    """Does an answer obey its probe's format instruction (yes/no, one word, short answer)? None for a probe
    without one. The one rule behind the logged compliance metrics and the per-item comparisons."""
    if probe == "yes_no":
        return is_yes_no(text)
    if probe == "one_word":
        return len(words(text)) == 1
    if probe == "short_answer":
        return len(words(text)) <= SHORT_ANSWER_MAX_WORDS
    return None


def count_junk(text: str, junk_tokens: Iterable[str]) -> int:
    """Occurrences of junk tokens in `text` as whole tokens (case-insensitive; a token may contain punctuation)."""
    total = 0
    for token in junk_tokens:
        if token:
            total += len(re.findall(rf"(?<!\w){re.escape(token)}(?!\w)", text, flags=re.IGNORECASE))
    return total


def score_probes(rows: Iterable[Row], junk_tokens: Iterable[str] = frozenset()) -> dict[str, float]:
    """Instruction-following probes (rows with a `probe` kind), each metric only when its probe has rows.

    `eval/probes/short_answer_words`: mean words per answer under "give a short answer" (paper: 15.81 Vicuna,
    20.15 LLaMA); `yes_no_compliance` / `one_word_compliance`: % of answers exactly "yes"/"no" / exactly one word;
    `caption_junk_rate`: % of generated captions with any junk token; `caption_junk_per_100_words`.
    """
    by_probe: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row.get("probe"):
            by_probe[row["probe"]].append(row["prediction"])
    junk = frozenset(junk_tokens)
    metrics: dict[str, float] = {}
    for probe, predictions in sorted(by_probe.items()):
        metrics[f"eval/probes/{probe}/n"] = len(predictions)
    if answers := by_probe.get("short_answer"):
        metrics["eval/probes/short_answer_words"] = sum(len(words(a)) for a in answers) / len(answers)
    for probe in ("yes_no", "one_word"):
        if answers := by_probe.get(probe):
            metrics[f"eval/probes/{probe}_compliance"] = _pct(sum(obeys_format(probe, a) for a in answers),
                                                               len(answers))
    if captions := by_probe.get("caption"):
        counts = [count_junk(c, junk) for c in captions]
        n_words = sum(len(words(c)) for c in captions)
        metrics["eval/probes/caption_junk_rate"] = _pct(sum(c > 0 for c in counts), len(captions))
        metrics["eval/probes/caption_junk_per_100_words"] = _pct(sum(counts), n_words)
    return metrics


def _mme_correct(row: Row) -> bool:
    """An MME row is right when its yes/no decision is: no judge is asked."""
    return detect_yes_no(row["prediction"], row["question"]) == normalise(row["answer"])


def judge_rows(rows: Iterable[Row], judge: Judge) -> list[Row]:
    """The rows with `correct` decided by `judge` (the predictions themselves are kept), in one `judge.batch`
    call when the judge has one; a judge's raw output is kept as `judge_output`. A judge change re-scores saved
    predictions without generating them again. MME rows are decided by their yes/no answer alone."""
    rows = [dict(row) for row in rows]
    asked = []
    for row in rows:
        if get_split(row["split"]).kind == "mme":
            row["correct"] = _mme_correct(row)
        else:
            asked.append(row)
    batch = getattr(judge, "batch", None)
    items = [(row["question"], row["prediction"], row["answer"]) for row in asked]
    results = list(batch(items)) if callable(batch) else [judge(*item) for item in items]
    if len(results) != len(items):
        raise AblateError(f"judge {type(judge).__name__}.batch returned {len(results)} results for {len(items)} items")
    for row, result in zip(asked, results, strict=True):
        correct, raw = result if isinstance(result, tuple) else (result, None)
        row["correct"] = bool(correct)
        if raw is not None:
            row["judge_output"] = str(raw)
        else:
            row.pop("judge_output", None)
    return rows


def score_rows(rows: list[Row], junk_tokens: Iterable[str] = frozenset()) -> dict[str, float]:
    """Every metric of the splits present in `rows`, each by its split's scorer."""
    metrics: dict[str, float] = {}
    for split in dict.fromkeys(row["split"] for row in rows):
        kind = get_split(split).kind
        if kind == "openvqa":
            metrics.update(score_openvqa(rows, split))
        elif kind == "mme":
            metrics.update(score_mme(rows, split))
        else:
            metrics.update(score_probes(_of_split(rows, split), junk_tokens))
    return metrics


def format_category_table(rows: Iterable[Row], split: str) -> str:
    """The paper's Table 3 layout for one split: a header of categories, then k/N per category and overall %."""
    counts = category_counts(list(rows), split)
    if not counts:
        return f"{split}: no items"
    k_all = sum(k for k, _ in counts.values())
    n_all = sum(n for _, n in counts.values())
    header = [split, *counts, "Overall"]
    values = ["", *(f"{k}/{n}" for k, n in counts.values()), f"{_pct(k_all, n_all):.2f}"]
    widths = [max(len(h), len(v)) for h, v in zip(header, values, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in (header, values)
    )


# ---- per-item metrics: what a paired comparison of two runs resamples -------------------------------------------

def _compliance(row: Row) -> float | None:
    obeyed = obeys_format(row.get("probe"), row["prediction"])
    return None if obeyed is None else 100.0 * obeyed


@dataclass(frozen=True)
class ItemMetric:
    """A metric that is a mean over benchmark items (in percent unless `unit` says otherwise), so two runs can be
    compared item by item: `score(row)` is the item's value, None when the row does not count."""

    name: str
    label: str
    split: str
    higher_is_better: bool
    score: Callable[[Row], float | None]
    unit: str = "%"

    def values(self, rows: Iterable[Row]) -> dict[str, float]:
        """item key -> value for the rows this metric counts."""
        out = {}
        for row in rows:
            if row["split"] == self.split and (value := self.score(row)) is not None:
                out[row["keys"]] = value
        return out


FIXED_ITEM_METRICS = {
    "probes/instruction_compliance": ItemMetric(
        "probes/instruction_compliance", "format instructions obeyed (yes/no, one word, short answer)", "probes",
        True, _compliance),
    "probes/caption_junk_rate": ItemMetric(
        "probes/caption_junk_rate", "detailed captions with a junk token", "probes", False,
        lambda r: 100.0 * (count_junk(r["prediction"], NOISE_TOKENS) > 0) if r.get("probe") == "caption" else None),
    "probes/short_answer_words": ItemMetric(
        "probes/short_answer_words", "words per answer under 'Give a short answer.'", "probes", False,
        lambda r: float(len(words(r["prediction"]))) if r.get("probe") == "short_answer" else None, unit="words"),
    "mme/acc": ItemMetric("mme/acc", "MME yes/no accuracy", "mme", True, lambda r: 100.0 * bool(r["correct"])),
}


def item_metric(name: str, undeclared: bool = False) -> ItemMetric:
    """The per-item metric called `name`: `<openvqa split>/acc`, `<openvqa split>/<category>/acc` (accuracy on
    that category's items) or one of `FIXED_ITEM_METRICS`. With `undeclared` (reports), also the accuracy of a
    split that no package installed here declares, e.g. a plugin split in a store reported elsewhere."""
    if name in FIXED_ITEM_METRICS:
        return FIXED_ITEM_METRICS[name]
    parts = name.split("/")
    split = declared(parts[0])
    if parts[-1] == "acc" and len(parts) in (2, 3) and (split.kind == "openvqa" if split else undeclared):
        category = parts[1] if len(parts) == 3 else None
        what = (f"Open-VQA {parts[0].removeprefix('openvqa_')}" if split in BUILT_IN
                else split.title if split else parts[0])
        label = f"{what} accuracy" + (f", {category}" if category else "")
        return ItemMetric(name, label, parts[0], True,
                          lambda r: 100.0 * bool(r["correct"]) if category in (None, r["category"]) else None)
    if parts[0] in SPLITS and split is None:  # a package declares the split but it does not load
        raise ValueError(f"item metric '{name}': {SPLITS.check(parts[0])}")
    known = [*FIXED_ITEM_METRICS, *(f"{s}/acc, {s}/<category>/acc" for s in known_splits()
                                    if (d := declared(s)) is not None and d.kind == "openvqa")]
    raise ValueError(f"unknown item metric '{name}'; known: {', '.join(known)}")
