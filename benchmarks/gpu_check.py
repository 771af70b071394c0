"""GPU check: the project's own model code at a scale, with random weights, on one accelerator.

    python benchmarks/gpu_check.py                                # paper scale on cuda: lynx and w_cross_attn
    python benchmarks/gpu_check.py --scale tiny --device cpu      # the same checks on the CPU (the test suite)

For each variant it prints and writes (as JSON, with --json): parameters, step time (median, frozen weights in the
training dtype, fused AdamW, vision tokens from a precomputed feature cache and, for comparison, computed every
step), model FLOPs per step, MFU against the card's bf16 peak, peak memory, and beam-search generation seconds per
item. It then checks device residency the way a run uses it: two Lightning stage fits with the run's strategy
(the model must still be on the accelerator after each, and how long each teardown took), then the benchmark's
generation path (batches moved to the model, autocast on the model's device type).
Needs torch, transformers, timm and lightning only (no mlflow, optuna or webdataset), so it runs on a bare GPU box.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore", ".*no_repeat_ngram_size.*inputs_embeds.*")  # known: n-grams over new tokens only
warnings.filterwarnings("ignore", ".*treespec.*LeafSpec.*")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}  # dense bf16 FLOP/s, no sparsity


def card_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((v for k, v in BF16_PEAK.items() if k in name), None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_batch(cfg, vocab: int, batch: int, text_len: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    size = cfg.model.vision.high_res_size
    ids = torch.randint(4, vocab, (batch, text_len), generator=g)
    labels = ids.clone()
    labels[:, : text_len // 2] = -100  # the prompt half is masked, as in instruction data
    return {"images": torch.randn(batch, 1, 3, size, size, generator=g),
            "frames_mask": torch.ones(batch, 1, dtype=torch.bool), "input_ids": ids,
            "attention_mask": torch.ones_like(ids), "labels": labels}


def check_variant(variant: str, scale: str, device: torch.device, batch: int, text_len: int, steps: int,
                  gen_items: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from harness.config.schema import GenerationConfig
    from harness.model import apply_freeze_policy, build_model
    from harness.model.mllm import model_inputs
    from harness.placement import autocast_for, hold_frozen_in_training_dtype, to_device
    from harness.resolve import resolve

    cfg = resolve(variant, scale, cli={"model.llm.source": "random", "model.vision.weights": "random"}).config
    precision = "bf16-mixed" if device.type == "cuda" else cfg.train.precision
    vocab = cfg.model.llm.vocab_size or 1000
    started = time.perf_counter()
    with torch.device(device):
        model = build_model(cfg.model, vocab, 0, 1, 2)
    stage = cfg.train.finetune
    apply_freeze_policy(model, cfg.model, stage)
    dtypes = hold_frozen_in_training_dtype(model, precision)
    built_s = time.perf_counter() - started
    data = to_device(synthetic_batch(cfg, vocab, batch, text_len, device), device)
    with torch.no_grad(), autocast_for(model, precision):  # the feature cache's content for this batch
        features = model.vision(data["images"].flatten(0, 1)).unflatten(0, data["images"].shape[:2])
    pixel_inputs = model_inputs(data)  # what a batch without the feature cache carries
    cached_inputs = model_inputs({**data, "images": None, "features": features})
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=device.type == "cuda")

    def step(cached: bool) -> float:
        sync(device)
        t = time.perf_counter()
        with autocast_for(model, precision):
            loss = model(**(cached_inputs if cached else pixel_inputs), labels=data["labels"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        return time.perf_counter() - t

    for _ in range(3):
        step(True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cached = statistics.median(step(True) for _ in range(steps))
    uncached = statistics.median(step(False) for _ in range(max(3, steps // 2)))
    with FlopCounterMode(display=False) as counter, autocast_for(model, precision):
        model(**cached_inputs, labels=data["labels"]).loss.backward()
    opt.zero_grad(set_to_none=True)
    flops = float(counter.get_total_flops())
    peak_mem = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    card, peak = card_peak(device)

    gen = GenerationConfig(max_new_tokens=64, num_beams=5, length_penalty=-2.0, no_repeat_ngram_size=2)
    prompt = {k: data[k][:gen_items, : text_len // 2] for k in ("input_ids", "attention_mask")}
    sync(device)
    t = time.perf_counter()
    with torch.no_grad(), autocast_for(model, precision):
        model.generate(images=None, features=features[:gen_items], frames_mask=data["frames_mask"][:gen_items],
                       gen=gen, eos_token_id=2, **prompt)
    sync(device)
    gen_s = (time.perf_counter() - t) / gen_items
    residency = check_residency(model, cfg, stage, data, features, device, precision)
    return {"variant": variant, "scale": scale, "card": card, "batch": batch, "text_len": text_len,
            "precision": precision, "params_B": sum(dtypes.values()) / 1e9,
            "trainable_B": sum(p.numel() for p in params) / 1e9, "params_by_dtype": dtypes, "build_s": built_s,
            "step_s": cached, "uncached_step_s": uncached, "tflop_per_step": flops / 1e12,
            "mfu": flops / cached / peak if peak else None, "peak_mem_GB": peak_mem, "gen_s_per_item": gen_s,
            **residency}


def check_residency(model, cfg, stage, data, features, device, precision) -> dict:
    """Two stage fits the way the runner does them; the model must stay on `device` through both."""
    import lightning as L

    from harness.placement import module_device, stage_strategy
    from harness.training import MultimodalModule

    batch = {k: data[k][:2] for k in ("frames_mask", "input_ids", "attention_mask", "labels")}
    batch["features"] = features[:2]
    loader = torch.utils.data.DataLoader([batch] * 4, batch_size=None)
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    teardowns, where = [], []
    for _ in range(2):
        trainer = L.Trainer(max_steps=2, accelerator=accelerator, devices=1, precision=precision,
                            strategy=stage_strategy(accelerator, 1), logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
        module = MultimodalModule(model, dataclasses.replace(stage, steps=2), 0.0)
        trainer.fit(module, train_dataloaders=loader)
        t = time.perf_counter()
        trainer.strategy.teardown()  # a second teardown times what Lightning's would cost: ours moves nothing
        teardowns.append(time.perf_counter() - t)
        where.append(str(module_device(model)))
    ok = all(w.split(":")[0] == device.type for w in where)
    return {"device_after_fits": where, "stays_on_device": ok, "teardown_s": max(teardowns)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="paper")
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--variants", default="lynx,w_cross_attn")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--text-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median)")
    parser.add_argument("--gen-items", type=int, default=4)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; use --device cpu (with --scale tiny) to run the checks on the CPU")
    device = torch.device(args.device)
    results = []
    for variant in args.variants.split(","):
        r = check_variant(variant, args.scale, device, args.batch, args.text_len, args.steps, args.gen_items)
        results.append(r)
        if device.type == "cuda":  # the variant's model is gone with its frame; hand its memory back
            torch.cuda.empty_cache()
        mfu = f"MFU {r['mfu']:.1%}" if r["mfu"] is not None else "MFU n/a (no known peak)"
        mem = f"peak {r['peak_mem_GB']:.1f} GB" if r["peak_mem_GB"] is not None else "peak memory n/a on cpu"
        print(f"{variant} @ {args.scale} on {r['card']}, batch {args.batch}: {r['params_B']:.4g}B params "
              f"({r['trainable_B']:.4g}B trainable), step {r['step_s']:.3f} s cached / {r['uncached_step_s']:.3f} s "
              f"uncached, {r['tflop_per_step']:.2f} TFLOP a step, {mfu}, {mem}, generation "
              f"{r['gen_s_per_item']:.2f} s an item; after two stage fits the model is on {r['device_after_fits']} "
              f"({'ok' if r['stays_on_device'] else 'MOVED'})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if not all(r["stays_on_device"] for r in results):
        sys.exit("gpu_check: the model left its device during a stage fit")


if __name__ == "__main__":
    main()
