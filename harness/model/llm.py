"""The language model: any transformers causal LM from a local folder, or random-init from the config sizes.

`LLMConfig.source` arrives resolved (`harness.zoo.resolve_source`): "random" or a local `save_pretrained` folder.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from harness.config.schema import LLMConfig
from harness.errors import AblateError


def llm_folder(source: str) -> Path | None:
    """The checked local folder of a resolved source, or None for "random"."""
    if source in ("", "random"):
        return None
    if source.startswith("zoo:"):
        raise AblateError(f"model.llm.source '{source}' must be resolved first (harness.zoo.resolve_source)")
    folder = Path(source)
    if not (folder / "config.json").is_file():
        what = "has no config.json" if folder.is_dir() else "does not exist"
        raise AblateError(
            f"model.llm.source {folder} {what}; it must be a local save_pretrained folder (nothing is downloaded)"
        )
    return folder


def llm_config(cfg: LLMConfig, vocab_size: int, pad_token_id: int, bos_token_id: int, eos_token_id: int):
    """A transformers config for `cfg.arch` at the configured sizes; vocab: cfg.vocab_size, else the tokenizer's."""
    if cfg.vocab_size is not None and cfg.vocab_size < vocab_size:
        raise AblateError(f"model.llm.vocab_size {cfg.vocab_size} is smaller than the tokenizer's {vocab_size} tokens")
    return AutoConfig.for_model(
        cfg.arch,
        vocab_size=cfg.vocab_size or vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=False,
    )


def build_llm(
    cfg: LLMConfig, vocab_size: int, pad_token_id: int, bos_token_id: int, eos_token_id: int
) -> PreTrainedModel:
    """Load the local folder `cfg.source` (local files only) or build `cfg.arch` with random weights."""
    folder = llm_folder(cfg.source)
    if folder is None:
        return AutoModelForCausalLM.from_config(llm_config(cfg, vocab_size, pad_token_id, bos_token_id, eos_token_id))
    llm = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    check_sizes(cfg, llm.config, folder)
    if llm.get_input_embeddings().num_embeddings < vocab_size:
        raise AblateError(
            f"model.llm.source {folder} has {llm.get_input_embeddings().num_embeddings} token embeddings "
            f"but the tokenizer has {vocab_size} tokens"
        )
    return llm


SIZE_FIELDS = {"hidden_size": "hidden_size", "intermediate_size": "intermediate_size",
               "num_layers": "num_hidden_layers", "num_heads": "num_attention_heads"}  # ours: transformers'


def check_sizes(cfg: LLMConfig, config: PretrainedConfig, folder: Path) -> None:
    """Refuse weights whose sizes differ from the ones the config asks for: the run would silently be another
    model than its config, its run key and its parameter counts say."""
    wrong = [f"model.llm.{ours}={getattr(cfg, ours)} but the weights have {getattr(config, theirs, None)}"
             for ours, theirs in SIZE_FIELDS.items() if getattr(config, theirs, None) != getattr(cfg, ours)]
    if wrong:
        raise AblateError(f"model.llm.source {folder} does not match the configured sizes: {'; '.join(wrong)}. "
                          "Set the sizes to the checkpoint's, or use a source built at these sizes (a `zoo:` "
                          "source is built at the run's sizes)")


def build_llm_shape(cfg: LLMConfig, vocab_size: int) -> PreTrainedModel:
    """The LLM's architecture only (use under `torch.device("meta")`): the folder's config.json, else the sizes."""
    folder = Path(cfg.source)
    if cfg.source not in ("", "random") and (folder / "config.json").is_file():
        config: PretrainedConfig = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    else:
        config = llm_config(cfg, vocab_size, 0, 1, 2)
    return AutoModelForCausalLM.from_config(config)


def decoder_layers(llm: PreTrainedModel) -> nn.ModuleList:
    """The LLM's list of decoder blocks (`model.layers` for LLaMA-likes, `transformer.h` for GPT-2-likes)."""
    decoder = llm.get_decoder() if hasattr(llm, "get_decoder") else llm.base_model
    for base in (decoder, llm.base_model):
        for name in ("layers", "h", "blocks"):
            if isinstance(getattr(base, name, None), nn.ModuleList):
                return getattr(base, name)
    raise AblateError(
        f"cannot find the decoder layers of {type(llm).__name__} (looked for layers / h / blocks); "
        "adapters and cross-attention need a LLaMA- or GPT-2-like architecture"
    )


# Causal LMs whose logits are just `lm_head(last hidden state)`: no logit scale or soft-capping.
PLAIN_HEAD = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def supervised_loss(llm: PreTrainedModel, inputs: dict, labels: torch.Tensor) -> torch.Tensor:
    """The LLM's next-token loss (transformers' own: float logits, mean over the labels that are not -100), with
    the output head applied only where a label is supervised.

    In an instruction batch a few percent of the positions carry a label, so projecting every position onto the
    vocabulary (and back, in the backward pass) was a fifth of a training step's work for nothing. Architectures
    whose head does more than one product fall back to the full forward."""
    if llm.config.model_type not in PLAIN_HEAD:
        return llm(**inputs, labels=labels).loss
    return head_loss(llm, llm.get_decoder()(**inputs).last_hidden_state, labels)


def head_loss(llm: PreTrainedModel, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The next-token loss of a PLAIN_HEAD LLM from its last hidden states [B, T, D] and labels [B, T]."""
    hidden = hidden[:, :-1]  # position t predicts label t + 1
    targets = labels[:, 1:]
    supervised = targets != -100
    logits = llm.get_output_embeddings()(hidden[supervised]).float()
    return F.cross_entropy(logits, targets[supervised])
