"""The zoo's vision encoders: timm ViTs pretrained CLIP-style on clean image-caption pairs.

The image tower is a plain timm ViT (saved alone, as a timm state dict); a linear projection, a one-layer text
transformer over the LM tokenizer's ids and a learnable temperature exist only for training and are dropped.
Captions repeat in a procedural world (many images are "a red circle ..."), so the symmetric InfoNCE loss treats
every pair with the same caption as a positive instead of pushing identical texts apart.
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

MAX_CAPTION_TOKENS = 32
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
    """[N, 3, size, size] uint8, resized once up front (4x smaller than floats, converted per batch)."""
    arrays = [np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR)) for im in images]
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


class Clip(nn.Module):
    """The ViT plus the training-only heads; `logit_scale` is the learnable inverse temperature (log)."""

    def __init__(self, cfg: VisionConfig, vocab_size: int, embed_dim: int) -> None:
        super().__init__()
        self.vit = timm.create_model(**timm_kwargs(cfg))
        self.img_proj = nn.Linear(self.vit.num_features, embed_dim, bias=False)
        self.text = TextTower(vocab_size, min(max(cfg.width, 64), 128), embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def embed_images(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.img_proj(self.vit(x)).float(), dim=-1)

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
    """Pairs as uint8 pixels plus an index into the unique captions (each caption is tokenized once)."""

    def __init__(self, pairs: Sequence[tuple[Image.Image, str]], size: int, tokenizer, pad_id: int) -> None:
        captions = [c for _, c in pairs]
        self.unique = sorted(set(captions))
        index = {c: i for i, c in enumerate(self.unique)}
        self.caption_idx = torch.tensor([index[c] for c in captions])
        self.pixels = images_to_uint8([im for im, _ in pairs], size)
        self.ids, self.mask = tokenize_captions(tokenizer, self.unique, pad_id)

    def __len__(self) -> int:
        return len(self.caption_idx)


def clip_step_loss(model: Clip, data: PairData, batch_size: int, gen: torch.Generator):
    """Symmetric InfoNCE on a random batch; pairs sharing a caption are all positives (soft targets)."""
    batch_size = min(batch_size, len(data))

    def step_loss(step: int) -> torch.Tensor:
        idx = torch.randperm(len(data), generator=gen)[:batch_size]
        cap = data.caption_idx[idx]
        img = model.embed_images(to_input(data.pixels[idx]))
        txt = model.embed_texts(data.ids[cap], data.mask[cap])
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        same = (cap[:, None] == cap[None, :]).float()
        targets = same / same.sum(1, keepdim=True)
        return (nn.functional.cross_entropy(logits, targets) + nn.functional.cross_entropy(logits.T, targets)) / 2

    return step_loss


@torch.no_grad()
def retrieval(model: Clip, data: PairData) -> dict[str, float]:
    """Zero-shot image->text top-1 accuracy on held-out pairs, with the chance level of each measure.

    `retrieval_top1`: the best of all held-out captions (one per image, duplicates included) must have the
    image's own caption text; `retrieval_top1_unique`: the best of the distinct captions must be its own.
    Identical captions embed identically, so the two accuracies agree; their chance levels differ (guessing a
    caption from the list favours frequent ones: `retrieval_chance`; from the distinct set: 1 / #distinct).
    """
    model.eval()
    img = torch.cat([model.embed_images(to_input(p)) for p in data.pixels.split(EVAL_BATCH)])
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
