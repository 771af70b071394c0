"""The world's tokenizer: a small lowercase WordPiece vocabulary built locally from every text the world produces.

Built from all texts written into the world's samples, every prompt phrasing (training pools, held-out ones, format
instructions), the chat template and the world's vocabulary; saved with `save_pretrained` in
`world.path / "tokenizer"` as a `PreTrainedTokenizerFast` (the `tokenizers` WordPiece model, no download) with
pad / bos / eos / unk, so every variant and every zoo backbone built on one world shares the same ids. The
vocabulary is every character of the alphabet (as a word start and as a continuation piece, so no text the world
can produce maps to <unk>) and the world's words, most frequent first, as whole tokens.

The vocabulary is computed here, not by `tokenizers`' WordPiece trainer: that trainer breaks ties between equally
frequent merges in hash-map order, which changes from process to process. Two builds of the same world then had
different vocabularies (33 of 735 pieces differed, 205 ids moved), so the same config and seed trained differently
on two machines, or in two output folders (docs/findings.md). Sorting by (count, word) makes the ids a function of
the world alone.

Sign texts are spelled one character per token, as LLaMA-style tokenizers split digits and rare letter runs. Left
to itself, the trainer merged 255 of the 256 two-character sign texts into whole tokens of their own, each seen a
handful of times in training; reading a sign was then a 256-way lookup of rare tokens instead of 16 characters
learned from every sign (docs/findings.md, OCR). Pieces made only of sign characters are therefore dropped from
the vocabulary unless they are words of the world's fixed texts ("the", "three", "me").
"""

from __future__ import annotations

import re
import string
from collections import Counter
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from harness.data.chat import answer_text, prompt_text
from harness.data.prompts import HELD_OUT, POOL
from harness.data.vocab import (
    COLOURS,
    FORMAT_INSTRUCTIONS,
    MME_SUFFIX,
    NOISE_TOKENS,
    NUMBER_WORDS,
    PLACES,
    SHAPES,
    SIGN_CHARS,
)
from harness.errors import AblateError

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
VOCAB_SIZE = 1500  # the alphabet twice and the world's words (about 700 at tiny) as whole tokens
ALPHABET = string.ascii_lowercase + string.digits + string.punctuation


def fixed_texts() -> list[str]:
    """Texts that do not come from samples: every phrasing, instruction, the chat template and the vocabulary."""
    texts = [prompt_text(t.format(question="What is this?")) + answer_text("yes")
             for pool in (POOL, HELD_OUT) for templates in pool.values() for t in templates]
    texts += [*FORMAT_INSTRUCTIONS.values(), MME_SUFFIX, " ".join(NOISE_TOKENS), " ".join(NUMBER_WORDS)]
    texts += [" ".join(COLOURS), " ".join(SHAPES), " ".join(PLACES), " ".join(SIGN_CHARS), ALPHABET]
    return texts


def vocabulary(texts: list[str]) -> dict[str, int]:
    """Token -> id: the special tokens, every alphabet character as a word start and as a continuation piece, then
    the words of `texts` + `fixed_texts()` by descending count (ties alphabetical) up to `VOCAB_SIZE`. Words made
    only of sign characters are left out unless they are words of the world's fixed texts ("the", "three", "me"),
    so signs are spelled one character per token."""
    normalizer, splitter = normalizers.Lowercase(), pre_tokenizers.BertPreTokenizer()  # words and punctuation apart
    counts = Counter(word for text in [*fixed_texts(), *texts]
                     for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    sign_chars = set(SIGN_CHARS.lower())
    fixed_words = set(re.findall(r"[a-z0-9]+", " ".join(fixed_texts()).lower()))
    alphabet = sorted(set(ALPHABET.lower()))
    tokens = [*SPECIAL_TOKENS.values(), *alphabet, *(f"##{c}" for c in alphabet if c.isalnum())]
    for word, _ in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])):
        if len(tokens) >= VOCAB_SIZE:
            break
        if len(word) > 1 and (not set(word) <= sign_chars or word in fixed_words):
            tokens.append(word)
    return {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}


def train_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """The lowercase WordPiece tokenizer of `texts` + `fixed_texts()` (the same ids in every process)."""
    tok = Tokenizer(models.WordPiece(vocabulary(texts), unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    # Like LLaMA tokenizers: plain `tokenizer(text)` starts with bos (our encoders add it explicitly).
    bos = SPECIAL_TOKENS["bos_token"]
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def build_tokenizer(world) -> PreTrainedTokenizerFast:
    """The tokenizer saved in `world.path / "tokenizer"` by `build_world`."""
    folder = Path(world.path) / "tokenizer"
    if not (folder / "tokenizer.json").is_file():
        raise AblateError(f"the world at {world.path} has no tokenizer; delete the folder to rebuild the world")
    return PreTrainedTokenizerFast.from_pretrained(folder)
