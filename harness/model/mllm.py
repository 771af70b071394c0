"""The multimodal LM: frames -> vision encoder (+ frame embedding) -> connector -> fusion -> LLM (with adapters).

Batches follow docs/contracts.md: `images` [B, F, 3, H, W] (or, from a frozen-feature cache, the encoder's tokens
`features` [B, F, N, D]), `frames_mask` [B, F] (a row of all False = text only), `input_ids` / `attention_mask`
[B, T] (right-padded for training, left-padded for generation).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from harness.components import ADAPTERS, CONNECTORS, FUSIONS
from harness.config.schema import GenerationConfig, ModelConfig
from harness.model.llm import build_llm, build_llm_shape, head_loss, supervised_loss
from harness.model.packing import Packing, packs
from harness.model.vision import FrameEmbedding, VisionEncoder


def model_inputs(batch: dict) -> dict:
    """The tensors of a batch that `MultimodalLM.forward` / `generate` take (labels aside): `images` (None when the
    batch carries cached `features`), `features`, `frames_mask`, `input_ids`, `attention_mask`."""
    keys = ("images", "features", "frames_mask", "input_ids", "attention_mask")
    return {"images": None, **{k: batch[k] for k in keys if k in batch}}


class MultimodalLM(nn.Module):
    """Vision encoder, frame embedding, connector, fusion and LLM; `adapter_modules` live inside the LLM."""

    def __init__(self, vision: VisionEncoder, frames: FrameEmbedding, connector: nn.Module, fusion: nn.Module,
                 llm: nn.Module, adapters: nn.ModuleList) -> None:
        super().__init__()
        self.vision = vision
        self.frames = frames
        self.connector = connector
        self.fusion = fusion
        self.llm = llm
        self.adapter_modules = list(adapters)  # a plain list: their parameters are saved once, under llm.*

    def visual_tokens(self, images: torch.Tensor | None, frames_mask: torch.Tensor,
                      features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, F, 3, H, W] or cached `features` [B, F, N, D], frames_mask [B, F] -> visual tokens
        [B, Q, D_llm] and their mask [B, Q]."""
        x, mask = self.frames(self.vision, images, frames_mask, features)  # [B, F*N, D_vis], [B, F*N]
        return self.connector(x, mask)

    def _inputs(self, images, frames_mask, input_ids, attention_mask, left_padded: bool, features=None):
        visual, vmask = self.visual_tokens(images, frames_mask, features)
        text = self.llm.get_input_embeddings()(input_ids)  # [B, T, D]
        embeds, mask = self.fusion.inputs(visual, vmask, text, attention_mask, left_padded)
        return visual, vmask, embeds, mask

    def forward(self, images: torch.Tensor | None, frames_mask: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                features: torch.Tensor | None = None, pack: bool = False) -> CausalLMOutputWithPast:
        """Training forward on right-padded text. Without `labels`: `.logits` [B, T, V], aligned with `input_ids`
        (visual positions cut). With `labels`: `.loss` only (`harness.model.llm.supervised_loss`); `pack` runs the
        LLM on packed rows of real positions (`harness.model.packing`: the same loss, less padding to compute)."""
        visual, vmask, embeds, mask = self._inputs(images, frames_mask, input_ids, attention_mask, False, features)
        q = embeds.shape[1] - input_ids.shape[1]  # prefix length (0 for cross_attn)
        # Positions count only attended tokens (as generate does), so a masked prefix does not shift the text.
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)
        if labels is not None and q:
            labels = torch.cat([labels.new_full((labels.shape[0], q), -100), labels], dim=1)  # no loss on visuals
        if labels is not None and pack and packs(self.llm):
            packing = Packing.of(mask.bool())
            packed = {"inputs_embeds": packing.pack(embeds), "attention_mask": packing.attention_mask(),
                      "position_ids": packing.pack(positions), "use_cache": False}
            with self.fusion.attach(visual, vmask, packing):
                hidden = packing.unpack(self.llm.get_decoder()(**packed).last_hidden_state)
            return CausalLMOutputWithPast(loss=head_loss(self.llm, hidden, labels))
        inputs = {"inputs_embeds": embeds, "attention_mask": mask, "position_ids": positions, "use_cache": False}
        with self.fusion.attach(visual, vmask):
            if labels is None:
                return CausalLMOutputWithPast(logits=self.llm(**inputs).logits[:, q:])
            return CausalLMOutputWithPast(loss=supervised_loss(self.llm, inputs, labels))

    @torch.no_grad()
    def generate(self, images: torch.Tensor | None, frames_mask: torch.Tensor, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor, gen: GenerationConfig, eos_token_id: int,
                 features: torch.Tensor | None = None) -> list[list[int]]:
        """HF generate (no sampling) on LEFT-padded prompts; the new token ids per item, cut before eos."""
        visual, vmask, embeds, mask = self._inputs(images, frames_mask, input_ids, attention_mask, True, features)
        beams = {} if gen.num_beams <= 1 else {"num_beams": gen.num_beams, "length_penalty": gen.length_penalty}
        ngram = {"no_repeat_ngram_size": gen.no_repeat_ngram_size} if gen.no_repeat_ngram_size > 0 else {}
        pad = self.llm.config.pad_token_id
        with self.fusion.attach(visual, vmask):
            # With inputs_embeds only, HF returns just the new tokens; position ids come from the mask's cumsum.
            out = self.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=gen.max_new_tokens,
                                    do_sample=False, eos_token_id=eos_token_id,
                                    pad_token_id=eos_token_id if pad is None else pad, **beams, **ngram)
        return [row[: row.index(eos_token_id)] if eos_token_id in row else row for row in out.tolist()]


def _assemble(cfg: ModelConfig, vision: VisionEncoder, llm: nn.Module) -> MultimodalLM:
    frames = FrameEmbedding(cfg.vision.max_frames, vision.out_dim)
    connector = CONNECTORS.get(cfg.connector.kind)(cfg.connector, vision.out_dim, llm.config.hidden_size)
    fusion = FUSIONS.get(cfg.fusion.kind)(cfg.fusion, llm)
    adapters = ADAPTERS.get(cfg.adapter.kind)(cfg.adapter, llm)
    return MultimodalLM(vision, frames, connector, fusion, llm, adapters)


def build_model(cfg: ModelConfig, vocab_size: int, pad_token_id: int, bos_token_id: int,
                eos_token_id: int) -> MultimodalLM:
    """Build the model; `cfg.vision.weights` / `cfg.llm.source` must already be resolved (a path or "random")."""
    vision = VisionEncoder(cfg.vision, cfg.vision.weights)
    llm = build_llm(cfg.llm, vocab_size, pad_token_id, bos_token_id, eos_token_id)
    return _assemble(cfg, vision, llm)


def build_meta_model(cfg: ModelConfig, vocab_size: int) -> MultimodalLM:
    """The architecture on the meta device (no memory, no weights): a folder source's config decides, if present."""
    weights = cfg.vision.weights if Path(cfg.vision.weights).exists() else "random"
    with torch.device("meta"):
        vision = VisionEncoder(cfg.vision, weights, load=False)
        return _assemble(cfg, vision, build_llm_shape(cfg.llm, vocab_size))
