"""Can a trained run learn a benchmark category when it trains on that category alone? (docs/findings.md, section 2)

Takes a finished run (its trainable weights and its last stage's freeze policy), trains it further, and every
`--every` steps measures greedy exact match per image category on fresh held-out items drawn by the benchmark's own
generator (`harness.data.scenes.image_item`), rendered at the run's resolution. `--schedule` lists what it trains
on, phase after phase (`WHAT:STEPS[:SHARE]`, comma-separated):
- `mixed:300`: the world's VQA recipe (a question of a category, categories evenly, plus 1-3 follow-ups about
  the same image, as one conversation);
- `Color:300` (any category): questions of that category only, one per image;
- `Color:300:0.25`: that share of the images asks the category, the rest are the mixed recipe.
The items are freshly drawn, so nothing repeats, and their questions are bare (no prompt templates, no format
instruction), in training and in the held-out items; the optimizer is AdamW at the last stage's learning rate,
constant.
Exact match is teacher-forced: every answer token and the end-of-answer token are the model's first choice, which
is what greedy decoding would produce.

    python docs/diagnostics/category_learning.py --out /tmp/o_s --experiment experiments/lynx_table3.yaml \\
        --variant lynx --schedule Color:300,mixed:300 --every 100
"""

from __future__ import annotations

import argparse
import dataclasses
import random
from pathlib import Path

import torch
from PIL import Image

import reports
from harness.data.chat import encode_dialogue
from harness.data.datamodule import image_to_tensor
from harness.data.render import render_scene
from harness.data.scenes import IMAGE_CATEGORIES, image_item
from harness.data.world import VQA_MORE, follow_ups
from harness.model import apply_freeze_policy
from harness.model.mllm import model_inputs
from harness.rescore import load_saved, restore
from harness.tracking import Store

ALONE = (0, 0)  # no follow-up questions


def sample(rng: random.Random, category: str, bounds: tuple[int, int], tok, size: int, max_len: int) -> dict:
    """One training example: a question of `category` about a fresh scene, then `bounds` follow-ups of other
    categories (`VQA_MORE`: as the world's `vqa` samples have)."""
    scene, q, a = image_item(rng, category)
    more = follow_ups(rng, scene, category, q, bounds)
    frame = image_to_tensor(Image.fromarray(render_scene(scene, size)), size)
    return {"frames": [frame], "image_size": size, **encode_dialogue(tok, [(q, a), *more], max_len)}


@torch.no_grad()
def exact_match(model, data, items: dict[str, list[dict]]) -> dict[str, float]:
    """Per category: the share of items whose every answer token (and eos) is the model's argmax."""
    model.eval()
    result = {}
    for category, examples in items.items():
        hits = 0
        for i in range(0, len(examples), 50):
            batch = data.collate_train(examples[i:i + 50])
            logits = model(**model_inputs(batch)).logits  # [B, T, V], aligned with input_ids
            pred, target = logits[:, :-1].argmax(-1), batch["labels"][:, 1:]
            supervised = target != -100
            hits += int(((pred == target) | ~supervised).all(1).sum())
        result[category] = hits / len(examples)
    model.train()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="the output folder holding the MLflow store")
    parser.add_argument("--experiment", default="experiments/lynx_table3.yaml")
    parser.add_argument("--variant", default="lynx")
    parser.add_argument("--seed", type=int, default=None, help="which seed's run (default: the first found)")
    parser.add_argument("--schedule", default="mixed:300",
                        help=f"phases WHAT:STEPS[:SHARE], WHAT 'mixed' or one of {', '.join(IMAGE_CATEGORIES)}")
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--items", type=int, default=100, help="held-out items per category")
    parser.add_argument("--size", type=int, default=None,
                        help="render and feed images at this size instead of the run's last stage's (e.g. 64: what "
                             "a run without the high-resolution phase sees)")
    parser.add_argument("--also", default="", help="components to train besides the last stage's, e.g. llm")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    phases = []
    for phase in args.schedule.split(","):
        parts = phase.split(":")
        what, steps, share = parts[0], parts[1] if len(parts) > 1 else "", parts[2:]
        share_ok = not share or share[0].replace(".", "", 1).isdigit() and 0 <= float(share[0]) <= 1
        if what != "mixed" and what not in IMAGE_CATEGORIES or not steps.isdigit() or len(share) > 1 or not share_ok:
            parser.error(f"--schedule phase {phase!r}: expected WHAT:STEPS[:SHARE], WHAT 'mixed' or one of "
                         f"{', '.join(IMAGE_CATEGORIES)}, e.g. Color:300:0.5")
        phases.append((what, int(steps), float(share[0]) if share else 1.0))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    study, store = reports.load(args.experiment, out=args.out), Store(args.out)
    runs = study.runs[study.runs.variant == args.variant]
    if args.seed is not None:
        runs = runs[runs.seed == args.seed]
    if runs.empty:
        raise SystemExit(f"no finished run of {args.variant} in {args.out} for {args.experiment}")
    config, folder, _ = load_saved(store, runs.run_id.iloc[0])
    model, assets, data = restore(store, config, folder)
    tok, size = assets.tokenizer, args.size or data.image_size
    data.features.clear()  # fresh images: the encoder runs on them, never a cache of the world's
    last = [stage for _, stage in config.train.stages()][-1]
    if args.also:
        last = dataclasses.replace(last, trainable=[*last.trainable, *args.also.split(",")])
    apply_freeze_policy(model, config.model, last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=last.lr, weight_decay=config.train.weight_decay)

    held_out = random.Random(10_000 + config.seed)
    max_len = config.data.max_text_len
    items = {c: [sample(held_out, c, ALONE, tok, size, max_len) for _ in range(args.items)] for c in IMAGE_CATEGORIES}
    print(f"{args.variant} seed {config.seed} at {size} px: training {sum(p.numel() for p in params)} parameters "
          f"({', '.join(last.trainable)}) at lr {last.lr}, schedule {args.schedule}", flush=True)

    def report(step: int) -> None:
        acc = exact_match(model, data, items)
        print(f"step {step:4d}: " + ", ".join(f"{c} {100 * v:.0f}" for c, v in acc.items())
              + f"; mean {100 * sum(acc.values()) / len(acc):.1f} %", flush=True)

    report(0)
    rng = random.Random(config.seed)
    schedule = [(what, share) for what, steps, share in phases for _ in range(steps)]
    for step, (what, share) in enumerate(schedule, start=1):
        batch = []
        for _ in range(args.batch_size):
            if what != "mixed" and rng.random() < share:
                batch.append(sample(rng, what, ALONE, tok, size, max_len))
            else:
                batch.append(sample(rng, rng.choice(IMAGE_CATEGORIES), VQA_MORE, tok, size, max_len))
        collated = data.collate_train(batch)
        loss = model(**model_inputs(collated), labels=collated["labels"]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.every == 0:
            report(step)


if __name__ == "__main__":
    main()
