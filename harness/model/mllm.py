"""The multimodal LM: vision encoder -> connector -> visual tokens prepended to the text -> LLM."""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from harness.config.schema import ModelConfig
from harness.errors import AblateError
from harness.model.adapters import ADAPTERS
from harness.model.connectors import CONNECTORS
from harness.model.llm import build_llm
from harness.model.vision import build_vision


class MultimodalLM(nn.Module):
    """Prefix fusion: [visual tokens, text tokens] go into the LLM as input embeddings."""

    def __init__(
        self, vision: nn.Module, connector: nn.Module, llm: nn.Module, adapters: nn.ModuleList
    ) -> None:
        super().__init__()
        self.vision = vision
        self.connector = connector
        self.llm = llm
        self.adapters = adapters  # also submodules of the LLM's layers; kept here to name and count them

    def embed(
        self,
        images: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        left_padded: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Input embeddings [B, Q+T, D] and attention mask [B, Q+T] of the visual prefix plus the text."""
        text = self.llm.get_input_embeddings()(input_ids)  # [B, T, D]
        visual = self.connector(self.vision(images)).to(text.dtype)  # [B, Q, D]
        embeds = torch.cat([visual, text], dim=1)
        mask = torch.cat([attention_mask.new_ones(visual.shape[:2]), attention_mask], dim=1)
        if left_padded:
            # [visual, pads, prompt] -> [pads, visual, prompt]: a stable sort on the mask moves the pads first
            # and keeps the order of everything else, so generation sees one contiguous left-padded sequence.
            order = torch.argsort(mask, dim=1, stable=True)
            embeds = embeds.gather(1, order[..., None].expand_as(embeds))
            mask = mask.gather(1, order)
        return embeds, mask

    def forward(
        self,
        images: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> CausalLMOutputWithPast:
        """Training forward on right-padded text; `.logits` [B, T, V] align with `input_ids` (visuals cut)."""
        embeds, mask = self.embed(images, input_ids, attention_mask)
        q = embeds.shape[1] - input_ids.shape[1]
        if labels is not None:
            ignore = labels.new_full((labels.shape[0], q), -100)  # no loss on the visual positions
            labels = torch.cat([ignore, labels], dim=1)
        out = self.llm(inputs_embeds=embeds, attention_mask=mask, labels=labels, use_cache=False)
        return CausalLMOutputWithPast(loss=out.loss, logits=out.logits[:, q:])

    @torch.no_grad()
    def generate(
        self,
        images: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        max_new_tokens: int,
        num_beams: int = 1,
        eos_token_id: int | None = None,
    ) -> list[list[int]]:
        """Greedy / beam search on LEFT-padded prompts; returns the new token ids per item, cut before eos.

        `eos_token_id=None` uses the LLM config's eos id(s).
        """
        eos = self.llm.config.eos_token_id if eos_token_id is None else eos_token_id
        stops = set(eos) if isinstance(eos, list) else {eos}  # some configs list several eos ids
        embeds, mask = self.embed(images, input_ids, attention_mask, left_padded=True)
        # With inputs_embeds only, HF returns just the new tokens; position ids come from the mask's cumsum.
        out = self.llm.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=min(stops) if self.llm.config.pad_token_id is None else self.llm.config.pad_token_id,
        )
        result = []
        for row in out.tolist():
            cut = next((i for i, t in enumerate(row) if t in stops), len(row))
            result.append(row[:cut])
        return result

    def components(self) -> dict[str, list[nn.Module]]:
        """Disjoint parameter groups: vision, connector, llm (without its adapters) and adapters."""
        return {
            "vision": [self.vision],
            "connector": [self.connector],
            "llm": _subtrees_without(self.llm, {id(a) for a in self.adapters}),
            "adapters": list(self.adapters),
        }


def _subtrees_without(module: nn.Module, excluded: set[int]) -> list[nn.Module]:
    """The largest submodules of `module` containing none of `excluded`: together they hold all the rest."""
    if id(module) in excluded:
        return []
    if not any(id(m) in excluded for m in module.modules()):
        return [module]
    assert not list(module.parameters(recurse=False)), "a container of adapters holds its own parameters"
    return [s for child in module.children() for s in _subtrees_without(child, excluded)]


def build_model(
    cfg: ModelConfig, vocab_size: int, pad_token_id: int, bos_token_id: int, eos_token_id: int
) -> MultimodalLM:
    """Build encoder, LLM, connector (vision width -> LLM width) and adapters; nothing is frozen yet."""
    if cfg.fusion != "prefix":
        raise AblateError(f"model.fusion '{cfg.fusion}' is not implemented; known: 'prefix'")
    vision = build_vision(cfg.vision)
    llm = build_llm(cfg.llm, vocab_size, pad_token_id, bos_token_id, eos_token_id)
    connector = CONNECTORS.get(cfg.connector.kind)(cfg.connector, vision.out_dim, llm.config.hidden_size)
    adapters = ADAPTERS.get(cfg.adapter.kind)(cfg.adapter, llm)
    return MultimodalLM(vision, connector, llm, adapters)
