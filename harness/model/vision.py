"""The vision encoder: a timm ViT built from the config (never downloaded), returning all of its tokens."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from harness.config.schema import VisionConfig
from harness.errors import AblateError


def load_weights(model: nn.Module, path: str) -> None:
    """Load a local safetensors / torch state dict into `model`; the classifier head, if saved, is ignored."""
    file = Path(path)
    if not file.is_file():
        raise AblateError(
            f"vision weights file not found: {file} (model.vision.weights); nothing is downloaded"
        )
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):  # common checkpoint wrappers
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
    # The encoder is built with num_classes=0, so a saved classifier head has nowhere to go.
    keys = model.state_dict().keys()
    state = {k: v for k, v in state.items() if k in keys or not k.startswith("head.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatch: the file is for another size
        reason = str(e).splitlines()[-1].strip()
        raise AblateError(f"vision weights {file} do not fit model.vision: {reason}") from None
    if missing or unexpected:
        raise AblateError(
            f"vision weights {file} do not fit model.vision: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )


class VisionEncoder(nn.Module):
    """A timm ViT; `forward(images [B,3,H,W]) -> [B, N, width]`, all tokens (CLS included), as in Lynx."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.vit = timm.create_model(
            cfg.model,
            pretrained=False,
            num_classes=0,
            img_size=cfg.image_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.width,
            depth=cfg.depth,
            num_heads=cfg.heads,
        )
        if cfg.feature_layer == "penultimate" and len(self.vit.blocks) < 2:
            raise AblateError(f"model.vision.feature_layer 'penultimate' needs depth >= 2, got {cfg.depth}")
        if cfg.weights:
            load_weights(self.vit, cfg.weights)
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
            images,
            indices=[len(self.vit.blocks) - 2],
            return_prefix_tokens=True,
            norm=False,
            stop_early=True,
            output_fmt="NLC",
            intermediates_only=True,
        )
        return torch.cat([prefix, patches], dim=1)


def build_vision(cfg: VisionConfig) -> VisionEncoder:
    """Build the vision encoder described by `cfg`."""
    return VisionEncoder(cfg)
