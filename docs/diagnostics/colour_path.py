"""Where does colour get lost on a trained run's path? (docs/findings.md, section 2)

Renders single-object scenes (no binding needed: one shape, one colour), asks "What colour is the <shape>?", and
reports the model's first-token accuracy over the colour words next to linear probes (70/30 split) on the frozen
encoder's tokens, the connector's output and the LLM's last hidden state at the answer position.

    python docs/diagnostics/colour_path.py --out /tmp/o_v6 --experiment experiments/lynx_table3.yaml --variant lynx
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch
from PIL import Image

import reports
from harness.data.chat import encode_prompt
from harness.data.datamodule import image_to_tensor
from harness.data.render import render_scene
from harness.data.scenes import sample_scene
from harness.data.vocab import COLOURS
from harness.model.mllm import model_inputs
from harness.rescore import load_saved, restore
from harness.tracking import Store


def probe(x: torch.Tensor, y: torch.Tensor, classes: int, train: float = 0.7) -> float:
    """Held-out accuracy of a linear classifier (standardised inputs, Adam, light L2)."""
    n = int(train * len(y))
    mu, sd = x[:n].mean(0), x[:n].std(0) + 1e-5
    x = (x - mu) / sd
    w = torch.zeros(x.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x[:n] @ w + b, y[:n]) + 1e-3 * w.pow(2).sum()
        loss.backward()
        opt.step()
    return ((x[n:] @ w + b).argmax(1) == y[n:]).float().mean().item()


@torch.no_grad()
def measure(model, data, tok, objects: tuple[int, int], n: int, seed: int) -> dict[str, float]:
    colours = list(COLOURS)
    ids = [tok(c, add_special_tokens=False).input_ids[-1] for c in colours]
    rng, size = random.Random(seed), data.image_size
    examples, labels = [], []
    for _ in range(n):
        scene = sample_scene(rng, sign=False, actor=False, min_objects=objects[0], max_objects=objects[1])
        shapes = [o["shape"] for o in scene["objects"]]
        obj = rng.choice([o for o in scene["objects"] if shapes.count(o["shape"]) == 1] or scene["objects"])
        image = Image.fromarray(render_scene(scene, size))
        examples.append({"frames": [image_to_tensor(image, size)],
                         "input_ids": encode_prompt(tok, f"What colour is the {obj['shape']}?"),
                         **{f: "" for f in ("keys", "split", "category", "question", "answer", "pair_id", "probe")}})
        labels.append(colours.index(obj["colour"]))
    feats: dict[str, list[torch.Tensor]] = {"encoder": [], "connector": [], "llm_last_hidden": []}
    logits = []
    for i in range(0, n, 50):
        inp = model_inputs(data.collate_eval(examples[i:i + 50], False, size))
        tokens, _ = model.frames(model.vision, inp["images"], inp["frames_mask"], None)
        visual, vmask, embeds, mask = model._inputs(inp["images"], inp["frames_mask"], inp["input_ids"],
                                                    inp["attention_mask"], True)
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)
        with model.fusion.attach(visual, vmask):
            out = model.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False,
                            output_hidden_states=True)
        feats["encoder"].append(tokens.flatten(1))
        feats["connector"].append(visual.flatten(1))
        feats["llm_last_hidden"].append(out.hidden_states[-1][:, -1])
        logits.append(out.logits[:, -1, ids])
    y = torch.tensor(labels)
    result = {"first_token": (torch.cat(logits).argmax(1) == y).float().mean().item()}
    with torch.enable_grad():
        result |= {k: probe(torch.cat(v).float(), y, len(colours)) for k, v in feats.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="the output folder holding the MLflow store")
    parser.add_argument("--experiment", default="experiments/lynx_table3.yaml")
    parser.add_argument("--variant", default="lynx")
    parser.add_argument("--n", type=int, default=700, help="scenes per measurement")
    args = parser.parse_args()
    torch.manual_seed(0)
    study, store = reports.load(args.experiment, out=args.out), Store(args.out)
    for run_id in study.runs[study.runs.variant == args.variant].run_id:
        config, folder, _ = load_saved(store, run_id)
        model, assets, data = restore(store, config, folder)
        model.eval()
        for label, objects, seed in (("1 object", (1, 1), 1), ("2-5 objects", (2, 5), 2)):
            numbers = measure(model, data, assets.tokenizer, objects, args.n, seed)
            print(f"{args.variant} seed {config.seed} {label}: "
                  + ", ".join(f"{k} {100 * v:.0f} %" for k, v in numbers.items()), flush=True)


if __name__ == "__main__":
    main()
