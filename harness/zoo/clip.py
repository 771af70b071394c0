"""The zoo's vision encoders: timm ViTs pretrained CLIP-style on clean image-caption pairs.

The image tower is a plain timm ViT (saved alone, as a timm state dict); a linear projection, a one-layer text
transformer over the LM tokenizer's ids and a learnable temperature exist only for training and are dropped.
Captions repeat in a procedural world (many images are "a red circle ..."), so the symmetric InfoNCE loss treats
every pair with the same caption as a positive instead of pushing identical texts apart.

Location-aware heads (as LocCa and SigLIP 2 add to contrastive pretraining) read dense targets off the patch
tokens when the pairs carry them (`harness.data.scenes.scene_targets`): what object is in each grid cell (shape,
colour, size, action), where the sign is, the place, and the sign's characters. Contrastive loss alone learns the
shortcuts that tell captions apart: a probe on a caption-only encoder read colours at 99% but shapes at 64%
(chance 52-57%) and sign characters not at all.

Steps alternate between the low and the high resolution of the scale (`ZooSpec.clip_high_res_every`), as
resolution-flexible ViTs are trained: a ViT trained at one size gives much worse tokens at the other (a linear
probe on a 64 px-trained encoder read colours at 99% at 64 px but 70% at 128 px), and the sign text the OCR
questions ask about is legible only at the high one. Images are resized exactly as the harness resizes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import timm
import torch
from PIL import Image
from torch import nn

from harness.config.schema import VisionConfig

MAX_CAPTION_TOKENS = 64  # detailed captions: every object with size, position and action, and the sign text
EVAL_BATCH = 256
MEAN = STD = (0.5, 0.5, 0.5)  # images enter the ViT in [-1, 1], as in the harness's batches


def timm_kwargs(cfg: VisionConfig) -> dict[str, Any]:
    """`timm.create_model` kwargs of the entry's ViT (saved in its config.json; never downloads)."""
    return dict(
        model_name=cfg.model, pretrained=False, num_classes=0, img_size=cfg.image_size,
        patch_size=cfg.patch_size, embed_dim=cfg.width, depth=cfg.depth, num_heads=cfg.heads,
        dynamic_img_size=True,  # so the encoder also runs at the high-resolution phase's size
    )


def images_to_uint8(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """[N, 3, size, size] uint8, resized once up front (4x smaller than floats, converted per batch) with the
    harness's own resampling (bicubic, as `harness.data.datamodule.image_to_tensor`)."""
    arrays = [np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def to_input(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float().div(127.5).sub(1.0)


class TextTower(nn.Module):
    """Token + position embeddings, one pre-norm transformer layer, masked mean pooling."""

    def __init__(self, vocab_size: int, width: int, out_dim: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab_size, width)
        self.pos = nn.Parameter(torch.zeros(MAX_CAPTION_TOKENS, width))
        self.layer = nn.TransformerEncoderLayer(width, nhead=max(1, width // 32), dim_feedforward=2 * width,
                                                dropout=0.0, batch_first=True, norm_first=True)
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, out_dim, bias=False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids) + self.pos[: ids.shape[1]]
        x = self.norm(self.layer(x, src_key_padding_mask=~mask))
        m = mask.unsqueeze(-1).to(x.dtype)
        return self.proj((x * m).sum(1) / m.sum(1).clamp_min(1))


CELLS = 4  # the world's grid side: `cell_*` targets have CELLS * CELLS slots


class Clip(nn.Module):
    """The ViT plus the training-only heads; `logit_scale` is the learnable inverse temperature (log).

    `aux` maps a dense target's name to (slots, classes): `cell_*` targets are read from the patch tokens pooled
    to the CELLS x CELLS grid, the others from the mean patch token (one linear head per slot position).
    """

    def __init__(self, cfg: VisionConfig, vocab_size: int, embed_dim: int,
                 aux: dict[str, tuple[int, int]] | None = None) -> None:
        super().__init__()
        self.vit = timm.create_model(**timm_kwargs(cfg))
        self.img_proj = nn.Linear(self.vit.num_features, embed_dim, bias=False)
        self.text = TextTower(vocab_size, min(max(cfg.width, 64), 128), embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        width = self.vit.num_features
        self.aux = dict(aux or {})
        self.heads = nn.ModuleDict({
            name: nn.Linear(width, classes * (1 if name.startswith("cell_") else slots))
            for name, (slots, classes) in self.aux.items()
        })

    def embed_images(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.vit.forward_features(x))

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unit-norm image embeddings from the ViT's tokens."""
        return nn.functional.normalize(self.img_proj(self.vit.forward_head(tokens)).float(), dim=-1)

    def aux_logits(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per target: logits [B, slots, classes] from the ViT's tokens [B, prefix + g*g, D]."""
        patches = tokens[:, self.vit.num_prefix_tokens:]
        B, P, D = patches.shape
        g = int(round(P ** 0.5))
        grid = patches.transpose(1, 2).reshape(B, D, g, g)
        cells = nn.functional.adaptive_avg_pool2d(grid, CELLS).flatten(2).transpose(1, 2)  # [B, CELLS^2, D]
        pooled = patches.mean(1)
        out = {}
        for name, (slots, classes) in self.aux.items():
            if name.startswith("cell_"):
                out[name] = self.heads[name](cells)
            else:
                out[name] = self.heads[name](pooled).view(B, slots, classes)
        return out

    def embed_texts(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.text(ids, mask).float(), dim=-1)


def tokenize_captions(tokenizer, captions: Sequence[str], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, T] right-padded ids and their mask (captions cut at MAX_CAPTION_TOKENS)."""
    rows = [ids[:MAX_CAPTION_TOKENS] or [pad_id] for ids in
            tokenizer(list(captions), add_special_tokens=False)["input_ids"]]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    return ids, mask


class PairData:
    """Pairs as uint8 pixels at each training resolution plus an index into the unique captions (each caption is
    tokenized once), and the dense targets [N, slots] per name when the pairs are (image, caption, targets)."""

    def __init__(self, pairs: Sequence[tuple], sizes: Sequence[int], tokenizer, pad_id: int) -> None:
        captions = [c for _, c, *_ in pairs]
        self.unique = sorted(set(captions))
        index = {c: i for i, c in enumerate(self.unique)}
        self.caption_idx = torch.tensor([index[c] for c in captions])
        self.sizes = list(dict.fromkeys(sizes))
        self.pixels = {size: images_to_uint8([im for im, *_ in pairs], size) for size in self.sizes}
        self.ids, self.mask = tokenize_captions(tokenizer, self.unique, pad_id)
        dense = [rest[0] for _, _, *rest in pairs if rest]
        self.targets: dict[str, torch.Tensor] = {}
        if dense and len(dense) == len(pairs):
            self.targets = {name: torch.tensor([d[name] for d in dense]) for name in dense[0]}

    def aux_spec(self) -> dict[str, tuple[int, int]]:
        """(slots, classes) of every dense target, for `Clip(aux=...)`."""
        return {name: (t.shape[1], int(t.max()) + 1) for name, t in self.targets.items()}

    def __len__(self) -> int:
        return len(self.caption_idx)


def aux_loss(model: Clip, tokens: torch.Tensor, targets: dict[str, torch.Tensor],
             skip_empty: frozenset[str] = frozenset()) -> torch.Tensor:
    """Mean cross-entropy of the location-aware heads; for the targets in `skip_empty`, slots whose target is 0
    ("nothing here": an empty cell, an unused sign position) do not count, so the many empty cells do not drown
    what the occupied ones teach."""
    logits = model.aux_logits(tokens)
    losses = []
    for name, value in logits.items():
        target = targets[name].flatten()
        if name in skip_empty:
            target = target.masked_fill(target == 0, -100)
            if not (target >= 0).any():
                continue
        losses.append(nn.functional.cross_entropy(value.flatten(0, 1).float(), target, ignore_index=-100))
    return torch.stack(losses).mean()


def clip_step_loss(model: Clip, data: PairData, batch_size: int, gen: torch.Generator, high_res_every: int = 0,
                   aux_weight: float = 0.0, skip_empty: frozenset[str] = frozenset()):
    """Symmetric InfoNCE on a random batch; pairs sharing a caption are all positives (soft targets); plus
    `aux_weight` times the location-aware heads' loss when the model has heads.

    With two sizes in `data`, every `high_res_every`-th step runs at the second (high) one (0: never).
    """
    batch_size = min(batch_size, len(data))
    low, high = data.sizes[0], data.sizes[-1]

    def step_loss(step: int) -> torch.Tensor:
        idx = torch.randperm(len(data), generator=gen)[:batch_size]
        cap = data.caption_idx[idx]
        size = high if high_res_every and (step + 1) % high_res_every == 0 else low
        tokens = model.vit.forward_features(to_input(data.pixels[size][idx]))
        img = model.project(tokens)
        txt = model.embed_texts(data.ids[cap], data.mask[cap])
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        same = (cap[:, None] == cap[None, :]).float()
        soft = same / same.sum(1, keepdim=True)
        loss = (nn.functional.cross_entropy(logits, soft) + nn.functional.cross_entropy(logits.T, soft)) / 2
        if aux_weight and model.aux:
            loss = loss + aux_weight * aux_loss(model, tokens, {n: t[idx] for n, t in data.targets.items()},
                                                skip_empty)
        return loss

    return step_loss


@torch.no_grad()
def aux_accuracy(model: Clip, data: PairData, size: int) -> dict[str, float]:
    """Held-out accuracy of each location-aware head at `size`, over the slots that hold something (an empty
    cell or an unused sign position is not counted, so "all empty" scores nothing)."""
    if not model.aux:
        return {}
    model.eval()
    logits: dict[str, list[torch.Tensor]] = {n: [] for n in model.aux}
    for p in data.pixels[size].split(EVAL_BATCH):
        for name, value in model.aux_logits(model.vit.forward_features(to_input(p))).items():
            logits[name].append(value.argmax(-1))
    out = {}
    for name, preds in logits.items():
        pred, truth = torch.cat(preds), data.targets[name]
        held = truth > 0
        out[f"aux_{name}_acc"] = (pred[held] == truth[held]).float().mean().item() if held.any() else float("nan")
    return out


@torch.no_grad()
def retrieval(model: Clip, data: PairData, size: int | None = None) -> dict[str, float]:
    """Zero-shot image->text top-1 accuracy on held-out pairs at `size` (default: the first), with the chance
    level of each measure.

    `retrieval_top1`: the best of all held-out captions (one per image, duplicates included) must have the
    image's own caption text; `retrieval_top1_unique`: the best of the distinct captions must be its own.
    Identical captions embed identically, so the two accuracies agree; their chance levels differ (guessing a
    caption from the list favours frequent ones: `retrieval_chance`; from the distinct set: 1 / #distinct).
    """
    model.eval()
    pixels = data.pixels[size or data.sizes[0]]
    img = torch.cat([model.embed_images(to_input(p)) for p in pixels.split(EVAL_BATCH)])
    txt = model.embed_texts(data.ids, data.mask)  # [U, D], one per unique caption
    own = data.caption_idx
    top1_unique = (img @ txt.T).argmax(1)
    per_pair = (img @ txt[own].T).argmax(1)  # over the N held-out captions
    counts = torch.bincount(own, minlength=len(data.unique)).float()
    return {
        "retrieval_top1": (own[per_pair] == own).float().mean().item(),
        "retrieval_chance": (counts[own] / len(own)).mean().item(),
        "retrieval_top1_unique": (top1_unique == own).float().mean().item(),
        "retrieval_chance_unique": 1.0 / len(data.unique),
        "heldout_pairs": float(len(own)),
        "heldout_unique_captions": float(len(data.unique)),
    }
