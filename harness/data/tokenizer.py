"""A tiny word-level tokenizer trained on every text the generated world can produce.

Trained locally with `tokenizers` (no download), wrapped as a `transformers.PreTrainedTokenizerFast` and
cached in the world's folder, so all variants built on one world share the same ids.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from harness.data.chat import answer_text, prompt_text
from harness.data.world import PHRASINGS, World, all_metas, question

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
CORPUS_FILE = "corpus.sha256"  # which corpus the cached tokenizer was trained on; a mismatch retrains


def corpus() -> list[str]:
    """Every chat text of every task, phrasing and scene: prompts, answers and captions."""
    texts = []
    for meta in all_metas():
        for phrasing in range(len(PHRASINGS[meta["task"]])):
            texts.append(prompt_text(question(meta, phrasing)) + answer_text(meta["answer"]))
        texts.append(meta["caption"])
    return texts


def build_tokenizer(world: World) -> PreTrainedTokenizerFast:
    """Load the world's tokenizer from `world.path / "tokenizer"`, training and saving it first if needed."""
    texts = corpus()
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    folder = world.path / "tokenizer"
    if not (folder / CORPUS_FILE).is_file() or (folder / CORPUS_FILE).read_text() != digest:
        tmp = world.path / f".tmp-tokenizer-{uuid.uuid4().hex[:8]}"
        _train(texts).save_pretrained(tmp)
        (tmp / CORPUS_FILE).write_text(digest)  # written last: marks the folder complete
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:  # a concurrent process saved the same tokenizer first
            shutil.rmtree(tmp, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def _train(texts: list[str]) -> PreTrainedTokenizerFast:
    """Train a lowercase word-level tokenizer that splits punctuation into its own tokens."""
    tok = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS.values())))
    # Like LLaMA tokenizers: plain `tokenizer(text)` starts with bos (our encoders add it explicitly).
    bos = SPECIAL_TOKENS["bos_token"]
    bos_id = tok.token_to_id(bos)
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, bos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
