"""The zoo's language models: llm-base (next-token pretraining on plain text) and llm-instruct (dialogue tuning).

Both are ordinary transformers causal LMs built with `AutoConfig.for_model(arch, ...)` and saved with
`save_pretrained` next to the tokenizer, so the harness loads them exactly as it would load a real checkpoint.
Dialogues use the harness chat format (`harness.data.chat`); only assistant tokens (and their eos) are trained on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from harness.config.schema import LLMConfig
from harness.data.chat import IGNORE_INDEX
from harness.errors import AblateError
from harness.model.llm import llm_config

EVAL_BATCH = 64


def special_ids(tokenizer) -> tuple[int, int, int]:
    """(pad, bos, eos) ids; the zoo needs all three (bos starts documents and prompts, eos ends answers)."""
    ids = (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    if any(i is None for i in ids):
        raise AblateError("the zoo's tokenizer needs pad, bos and eos tokens, got ids "
                          f"pad={ids[0]} bos={ids[1]} eos={ids[2]}")
    return ids


def new_lm(cfg: LLMConfig, tokenizer) -> PreTrainedModel:
    """A randomly initialised causal LM of `cfg.arch`, built exactly as the harness builds a random-init LLM."""
    pad, bos, eos = special_ids(tokenizer)
    return AutoModelForCausalLM.from_config(llm_config(cfg, len(tokenizer), pad, bos, eos))


def pack(tokenizer, texts: Sequence[str], seq_len: int) -> torch.Tensor:
    """Documents as `<s> text </s>`, concatenated and cut into [N, seq_len] blocks (no padding is wasted)."""
    _, bos, eos = special_ids(tokenizer)
    stream: list[int] = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        stream += [bos, *ids, eos]
    n = len(stream) // seq_len
    if n == 0:
        raise AblateError(f"the zoo's LM texts hold {len(stream)} tokens, fewer than one sequence of {seq_len}")
    return torch.tensor(stream[: n * seq_len]).view(n, seq_len)


def collate(examples: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded `input_ids`, `attention_mask`, `labels` (padding ignored by the loss)."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), IGNORE_INDEX)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def lm_step_loss(model: PreTrainedModel, blocks: torch.Tensor, batch_size: int, gen: torch.Generator):
    """Next-token loss on a random batch of packed blocks."""

    def step_loss(step: int) -> torch.Tensor:
        idx = torch.randint(len(blocks), (batch_size,), generator=gen)
        batch = blocks[idx]
        return model(input_ids=batch, labels=batch).loss

    return step_loss


def instruct_step_loss(model: PreTrainedModel, examples: list[dict], blocks: torch.Tensor, batch_size: int,
                       pad_id: int, gen: torch.Generator):
    """Assistant-token loss on a random batch of dialogues, plus next-token loss on half a batch of plain text.

    Without the replayed text, a few hundred dialogue steps make the tiny LM forget plain language (held-out
    perplexity rose from ~2 to ~35 in a trial); replaying pretraining data keeps it, as instruction tuning
    recipes that mix in pretraining data do.
    """
    replay = lm_step_loss(model, blocks, max(1, batch_size // 2), gen)

    def step_loss(step: int) -> torch.Tensor:
        idx = torch.randint(len(examples), (batch_size,), generator=gen).tolist()
        return model(**collate([examples[i] for i in idx], pad_id)).loss + replay(step)

    return step_loss


@torch.no_grad()
def mean_token_loss(model: PreTrainedModel, batches: Sequence[dict[str, torch.Tensor]]) -> float:
    """Mean next-token cross-entropy over every supervised token of every batch (fp32, for exact numbers)."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
        labels = batch["labels"][:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        total += loss.item()
        count += int((labels != IGNORE_INDEX).sum())
    return total / max(count, 1)


def perplexity(model: PreTrainedModel, blocks: torch.Tensor) -> float:
    """exp(mean next-token loss) on packed held-out blocks."""
    batches = [{"input_ids": b, "labels": b} for b in blocks.split(EVAL_BATCH)]
    return math.exp(mean_token_loss(model, batches))


def dialogue_loss(model: PreTrainedModel, examples: list[dict], pad_id: int) -> float:
    """Mean loss per assistant token on held-out dialogues."""
    batches = [collate(examples[i : i + EVAL_BATCH], pad_id) for i in range(0, len(examples), EVAL_BATCH)]
    return mean_token_loss(model, batches)
