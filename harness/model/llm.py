"""The language model: a transformers causal LM from a local folder, or random-init from the config."""

from __future__ import annotations

from pathlib import Path

from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from harness.config.schema import LLMConfig
from harness.errors import AblateError


def build_llm(
    cfg: LLMConfig, vocab_size: int, pad_token_id: int, bos_token_id: int, eos_token_id: int
) -> PreTrainedModel:
    """Load `cfg.path` (local files only) or build `cfg.arch` at the configured sizes with random weights."""
    if cfg.path:
        folder = Path(cfg.path)
        if not (folder / "config.json").is_file():
            what = "has no config.json" if folder.is_dir() else "does not exist"
            raise AblateError(
                f"model.llm.path {folder} {what}; it must be a local save_pretrained folder "
                "(nothing is downloaded)"
            )
        llm = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
        if llm.get_input_embeddings().num_embeddings < vocab_size:
            raise AblateError(
                f"model.llm.path {folder} has {llm.get_input_embeddings().num_embeddings} token embeddings "
                f"but the tokenizer has {vocab_size} tokens"
            )
        return llm
    config = AutoConfig.for_model(
        cfg.arch,
        vocab_size=vocab_size,
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
        "adapters need a LLaMA- or GPT-2-like architecture"
    )
