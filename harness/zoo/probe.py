"""Linear probes: what a frozen vision encoder can tell apart, per attribute the benchmark asks about.

Before blaming the connector or the LLM for a category a model cannot answer, check the encoder: if a linear
probe on its frozen tokens cannot read an attribute, no connector trained on top will. Tokens are pooled to the
world's grid of cells (so the same probe reads any resolution); per-cell attributes (shape, colour, size, action
of the object in a cell, the sign character in a sign cell, sign present) get one linear probe shared by all
cells and are scored on the cells that hold one;
scene attributes (place, object count) get a linear probe on all cells together.
Every accuracy comes with its majority-class baseline, on images the probe was not fitted on.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.data.datamodule import image_to_tensor
from harness.data.scenes import GRID, scene_targets

CELL_ATTRIBUTES = ("cell_shape", "cell_colour", "cell_size", "cell_action", "cell_char")
PROBE_STEPS = 300
ENCODE_BATCH = 128


@torch.no_grad()
def cell_features(encoder: nn.Module, images, image_size: int) -> torch.Tensor:
    """[N, GRID*GRID, D]: the encoder's patch tokens average-pooled to the world's grid of cells."""
    encoder.eval()
    out = []
    prefix = getattr(encoder.vit, "num_prefix_tokens", 1)
    for start in range(0, len(images), ENCODE_BATCH):
        pixels = torch.stack([image_to_tensor(im, image_size) for im in images[start:start + ENCODE_BATCH]])
        tokens = encoder(pixels)[:, prefix:]
        B, P, D = tokens.shape
        g = int(round(P ** 0.5))
        grid = tokens.transpose(1, 2).reshape(B, D, g, g)
        out.append(nn.functional.adaptive_avg_pool2d(grid, GRID).flatten(2).transpose(1, 2))
    return torch.cat(out)


def _fit(x: torch.Tensor, y: torch.Tensor, n_train: int, seed: int = 0) -> tuple[float, float]:
    """Held-out accuracy of a linear softmax probe, and of always guessing the training majority class."""
    torch.manual_seed(seed)
    mean, std = x[:n_train].mean(0), x[:n_train].std(0) + 1e-5
    x = (x - mean) / std
    probe = nn.Linear(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-3)
    with torch.enable_grad():
        for _ in range(PROBE_STEPS):
            loss = nn.functional.cross_entropy(probe(x[:n_train]), y[:n_train])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = (probe(x[n_train:]).argmax(1) == y[n_train:]).float().mean().item()
    majority = (y[n_train:] == y[:n_train].mode().values).float().mean().item()
    return 100 * acc, 100 * majority


def probe_encoder(encoder: nn.Module, images, scenes: list[dict], image_size: int,
                  train_frac: float = 0.75) -> dict[str, tuple[float, float]]:
    """attribute -> (probe accuracy %, majority baseline %) of `encoder` at `image_size` on (image, scene) data."""
    feats = cell_features(encoder, images, image_size)  # [N, C, D]
    n_train = int(len(images) * train_frac)
    targets = [scene_targets(s) for s in scenes]
    results = {}
    for name in CELL_ATTRIBUTES:
        y = torch.tensor([t[name] for t in targets])  # [N, C], 0 = empty cell
        occupied = y > 0
        train = occupied.clone()
        train[n_train:] = False
        x_tr, y_tr = feats[train], y[train]
        x_te, y_te = feats[occupied & ~train], y[occupied & ~train]
        results[name.removeprefix("cell_")] = _fit(torch.cat([x_tr, x_te]), torch.cat([y_tr, y_te]), len(y_tr))
    results["sign_present"] = _fit(feats.flatten(0, 1), torch.tensor([t["cell_sign"] for t in targets]).flatten(),
                                   n_train * feats.shape[1])
    flat = feats.flatten(1)
    scene_y = {
        "place": torch.tensor([t["place"][0] for t in targets]),
        "count": torch.tensor([len(s["objects"]) for s in scenes]),
    }
    for name, y in scene_y.items():
        results[name] = _fit(flat, y, n_train)
    return results


def format_probe(results: dict[str, dict[str, tuple[float, float]]]) -> list[str]:
    """A table: one row per attribute, one column per resolution (probe % / majority %)."""
    sizes = list(results)
    names = list(next(iter(results.values())))
    lines = [f"{'attribute':<14}" + "".join(f"{f'{s} px: probe / majority':>28}" for s in sizes)]
    for name in names:
        cells = "".join(f"{results[s][name][0]:>18.1f} / {results[s][name][1]:>5.1f}  " for s in sizes)
        lines.append(f"{name:<14}{cells}")
    return lines
