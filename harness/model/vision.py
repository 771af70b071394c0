"""The vision side: a timm encoder (never downloaded) and the video frame embedding.

`VisionEncoder` wraps any timm ViT built with `dynamic_img_size=True`, so the same weights run at the low
(pretraining) and high (after the high-res phase) resolution with the position embedding interpolated.
`FrameEmbedding` encodes [B, F] frames separately (F folded into the batch, padding frames skipped), adds a
learnable per-frame embedding and concatenates the tokens of all frames, with a token mask for the connector.

Weights (`VisionConfig.weights`, already resolved by `harness.zoo.resolve_source`): "random", a folder with
`model.safetensors` + `config.json` (timm `create_model` kwargs; the folder decides the architecture, like a real
checkpoint), or a single weight file (.safetensors or a torch state dict) for the architecture in the config.
"""

from __future__ import annotations

import json
from pathlib import Path

import timm
import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from harness.config.schema import VisionConfig
from harness.errors import AblateError
from harness.model.masks import on_real_rows

# Flat config.json keys passed on to timm.create_model; anything else (quality numbers) is ignored.
TIMM_KWARGS = {
    "img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "class_token",
    "no_embed_class", "reg_tokens", "pre_norm", "fc_norm", "global_pool", "init_values", "in_chans",
}
OWN_KWARGS = {"model_name", "pretrained", "num_classes", "dynamic_img_size"}  # set here, never from a file


def read_state(file: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch checkpoint (weights_only)."""
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    state = torch.load(file, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def load_weights(vit: nn.Module, file: Path) -> None:
    """Load a local state dict into `vit`; a saved classifier head is dropped, a pos_embed of another grid resized."""
    state = {k: v for k, v in read_state(file).items() if not k.startswith("head.")}
    pos = getattr(vit, "pos_embed", None)
    if pos is not None and "pos_embed" in state and state["pos_embed"].shape != pos.shape:
        prefix = 0 if getattr(vit, "no_embed_class", False) else vit.num_prefix_tokens
        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], vit.patch_embed.grid_size,
                                                    num_prefix_tokens=prefix)
    try:
        missing, unexpected = vit.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatch: the file is for another size
        reason = str(e).splitlines()[-1].strip()
        raise AblateError(f"vision weights {file} do not fit model.vision: {reason}") from None
    if missing or unexpected:
        raise AblateError(
            f"vision weights {file} do not fit model.vision: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )


def read_spec(config: Path, default_name: str) -> tuple[str, dict]:
    """(timm model name, kwargs) from a config.json: {"create_model": {model_name, ...}} (the zoo's) or flat keys."""
    spec = json.loads(config.read_text())
    if isinstance(spec.get("create_model"), dict):
        kwargs = spec["create_model"]
        return kwargs.get("model_name", default_name), {k: v for k, v in kwargs.items() if k not in OWN_KWARGS}
    names = [spec[k] for k in ("model_name", "model", "architecture") if isinstance(spec.get(k), str)]
    name = names[0] if names else default_name
    return name, {k: v for k, v in spec.items() if k in TIMM_KWARGS}


def describes_model(spec: object) -> bool:
    """Whether a config.json says which ViT to build: the zoo's {"create_model": {...}} or flat timm kwargs."""
    return isinstance(spec, dict) and (isinstance(spec.get("create_model"), dict) or bool(TIMM_KWARGS & set(spec)))


def timm_spec(cfg: VisionConfig, weights: str) -> tuple[str, dict, Path | None]:
    """(timm model name, create_model kwargs, weight file or None) for a resolved `weights` source.

    A folder's config.json, or a config.json next to a weight file (the zoo's {"create_model": ...} or flat timm
    kwargs, both layouts the README documents), decides the architecture; otherwise the config's sizes do.
    """
    kwargs = dict(img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.width, depth=cfg.depth,
                  num_heads=cfg.heads)
    if weights in ("", "random"):
        return cfg.model, kwargs, None
    if weights.startswith("zoo:"):
        raise AblateError(f"vision weights '{weights}' must be resolved first (harness.zoo.resolve_source)")
    path = Path(weights)
    if path.is_dir():
        if not (path / "model.safetensors").is_file() or not (path / "config.json").is_file():
            raise AblateError(f"vision weights folder {path} needs model.safetensors and config.json")
        return *read_spec(path / "config.json", cfg.model), path / "model.safetensors"
    if not path.is_file():
        raise AblateError(f"vision weights not found: {path} (model.vision.weights); nothing is downloaded")
    sibling = path.parent / "config.json"  # the README's layout: a weight file with its config.json beside it
    if sibling.is_file() and describes_model(json.loads(sibling.read_text())):
        return *read_spec(sibling, cfg.model), path
    return cfg.model, kwargs, path


class VisionEncoder(nn.Module):
    """A timm ViT; `forward(images [B, 3, H, W]) -> [B, N, width]`, all tokens (CLS included), as in Lynx."""

    def __init__(self, cfg: VisionConfig, weights: str = "random", load: bool = True) -> None:
        super().__init__()
        name, kwargs, file = timm_spec(cfg, weights)
        self.vit = timm.create_model(name, pretrained=False, num_classes=0, dynamic_img_size=True, **kwargs)
        if cfg.feature_layer == "penultimate" and len(self.vit.blocks) < 2:
            raise AblateError(f"model.vision.feature_layer 'penultimate' needs depth >= 2, got {len(self.vit.blocks)}")
        if file is not None and load:
            load_weights(self.vit, file)
        self.feature_layer = cfg.feature_layer

    @property
    def out_dim(self) -> int:
        """Width of the returned tokens."""
        return self.vit.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.feature_layer == "last":
            return self.vit.forward_features(images)  # final norm applied, [B, prefix + patches, width]
        # Penultimate block, un-normed (as LLaVA takes CLIP's second-to-last layer).
        ((patches, prefix),) = self.vit.forward_intermediates(
            images, indices=[len(self.vit.blocks) - 2], return_prefix_tokens=True, norm=False, stop_early=True,
            output_fmt="NLC", intermediates_only=True,
        )
        return torch.cat([prefix, patches], dim=1)


class FrameEmbedding(nn.Module):
    """Per-frame encoding + a learnable embedding per frame index; frames concatenated along the tokens."""

    def __init__(self, max_frames: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Parameter(torch.randn(max_frames, dim) * 0.02)

    def forward(self, encoder: VisionEncoder, images: torch.Tensor | None, frames_mask: torch.Tensor,
                features: torch.Tensor | None = None):
        """images [B, F, 3, H, W] (or the encoder's cached tokens `features` [B, F, N, D]), frames_mask [B, F]
        -> tokens [B, F*N, D], token mask [B, F*N] (bool)."""
        B, F = frames_mask.shape
        if F > self.embed.shape[0]:
            raise AblateError(f"{F} frames in a batch but model.vision.max_frames is {self.embed.shape[0]}")
        if features is not None:  # precomputed by a frozen encoder (harness.features): padding frames are zeros
            x = features * frames_mask[:, :, None, None].to(features.dtype)
            x = x + self.embed[:F, None].to(x.dtype)  # [B, F, N, D]
            mask = frames_mask[:, :, None].expand(B, F, x.shape[2])
            return x.flatten(1, 2), mask.flatten(1)
        encoded = frames_mask  # valid frames only: padding frames cost nothing
        if not bool(frames_mask.any()):  # a text-only batch: encode one (masked) frame to keep shapes and dtypes
            encoded = frames_mask.clone()
            encoded.view(-1)[0] = True
        x = on_real_rows(encoder, images, encoded)  # [B, F, N, D]
        x = x + self.embed[:F, None].to(x.dtype)
        mask = frames_mask[:, :, None].expand(B, F, x.shape[2])
        return x.flatten(1, 2), mask.flatten(1)


def build_vision(cfg: VisionConfig, weights: str | None = None) -> VisionEncoder:
    """Build the encoder; `weights` defaults to `cfg.weights` (a resolved source: a path or "random")."""
    return VisionEncoder(cfg, cfg.weights if weights is None else weights)
