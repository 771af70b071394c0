"""The world's tokenizer: a small lowercase WordPiece vocabulary trained locally on every text the world produces.

Trained with `tokenizers` (no download) on all texts written into the world's samples, every prompt phrasing
(training pools, held-out ones, format instructions), the chat template and the world's vocabulary; saved with
`save_pretrained` in `world.path / "tokenizer"` as a `PreTrainedTokenizerFast` with pad / bos / eos / unk, so
every variant and every zoo backbone built on one world shares the same ids. WordPiece (not word-level) because
sign texts are arbitrary strings of 1-2 characters: every character of the alphabet is in the vocabulary, so no
text the world can produce maps to <unk>.

Sign texts are spelled one character per token, as LLaMA-style tokenizers split digits and rare letter runs. Left
to itself, the trainer merged 255 of the 256 two-character sign texts into whole tokens of their own, each seen a
handful of times in training; reading a sign was then a 256-way lookup of rare tokens instead of 16 characters
learned from every sign (docs/findings.md, OCR). Pieces made only of sign characters are therefore dropped from
the vocabulary unless they are words of the world's fixed texts ("the", "three", "me").
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
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
VOCAB_SIZE = 1500  # the world's ~500 words as whole tokens, the rest frequent word pieces
ALPHABET = string.ascii_lowercase + string.digits + string.punctuation


def fixed_texts() -> list[str]:
    """Texts that do not come from samples: every phrasing, instruction, the chat template and the vocabulary."""
    texts = [prompt_text(t.format(question="What is this?")) + answer_text("yes")
             for pool in (POOL, HELD_OUT) for templates in pool.values() for t in templates]
    texts += [*FORMAT_INSTRUCTIONS.values(), MME_SUFFIX, " ".join(NOISE_TOKENS), " ".join(NUMBER_WORDS)]
    texts += [" ".join(COLOURS), " ".join(SHAPES), " ".join(PLACES), " ".join(SIGN_CHARS), ALPHABET]
    return texts


def _spelled_signs(vocab: dict[str, int]) -> dict[str, int]:
    """`vocab` without word-initial pieces made only of sign characters (other than real words), renumbered in the
    original order, with every sign character present as a word start and as a continuation piece."""
    sign_chars = set(SIGN_CHARS.lower())
    words = set(re.findall(r"[a-z0-9]+", " ".join(fixed_texts()).lower()))
    kept = [tok for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])
            if tok.startswith("##") or len(tok) < 2 or not set(tok) <= sign_chars or tok in words]
    kept += [p for c in sorted(sign_chars) for p in (c, f"##{c}") if p not in vocab]
    return {tok: i for i, tok in enumerate(kept)}


def train_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """Train the lowercase WordPiece tokenizer on `texts` + `fixed_texts()`."""
    tok = Tokenizer(models.WordPiece(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # words and punctuation apart
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(SPECIAL_TOKENS.values()),
                                        initial_alphabet=list(ALPHABET), show_progress=False)
    tok.train_from_iterator([*fixed_texts(), *texts], trainer)
    tok.model = models.WordPiece(_spelled_signs(tok.get_vocab()), unk_token=SPECIAL_TOKENS["unk_token"])
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
