"""`build_zoo`: train and save whichever zoo entries are missing, damaged or out of date, and log each build.

Entries are independent folders under `out_dir` (see `harness.zoo.entries`): an intact entry whose spec hash
matches is reused untouched, so a second build with the same spec and inputs only hashes inputs and files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from harness.data.chat import encode_dialogue
from harness.data.scenes import EMPTY_IS_UNKNOWN
from harness.errors import AblateError
from harness.tracking import Store, experiment_id, finish, log_batch, log_metric_series, provenance
from harness.zoo import clip, lm
from harness.zoo.entries import ENTRIES, VIT_WEIGHTS, install, read_manifest, temp_folder, verify_entry, write_manifest
from harness.zoo.loop import fit
from harness.zoo.spec import ZooSpec, digest_dialogues, digest_pairs, digest_texts, digest_tokenizer, entry_hashes

log = logging.getLogger(__name__)

EXPERIMENT = "zoo"
HELDOUT_DIALOGUE_FRACTION = 0.05  # when no held-out dialogues are given, this share of `dialogues` is held out
MAX_HELDOUT_DIALOGUES = 200


def build_zoo(
    spec: ZooSpec,
    out_dir: Path | str,
    tokenizer: PreTrainedTokenizerFast,
    texts: Sequence[str],
    dialogues: Sequence[Sequence[tuple[str, str]]],
    pairs: Sequence[tuple[Image.Image, str]],
    heldout_texts: Sequence[str],
    heldout_pairs: Sequence[tuple[Image.Image, str]],
    seed: int = 0,
    store: Store | None = None,
    force: bool = False,
    heldout_dialogues: Sequence[Sequence[tuple[str, str]]] | None = None,
    entries: Iterable[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Build every zoo entry that is missing, damaged or built from another spec/inputs; reuse the rest.

    `dialogues` are text-only instruction dialogues as (user, assistant) turns; when `heldout_dialogues` is not
    given, the last 5% (at most 200) of `dialogues` are held out for the instruct loss. `force` rebuilds all.
    `entries` limits the work to those entries and what they are built from (llm-instruct needs llm-base).
    Returns, per entry: `path`, `built` (False = reused), `quality` (as recorded in its zoo_entry.json).
    """
    wanted = with_dependencies(entries)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not texts or not dialogues or not pairs or not heldout_texts or not heldout_pairs:
        raise AblateError("build_zoo needs non-empty texts, dialogues, pairs, heldout_texts and heldout_pairs")
    if heldout_dialogues is None:
        n = min(MAX_HELDOUT_DIALOGUES, max(1, int(len(dialogues) * HELDOUT_DIALOGUE_FRACTION)))
        if len(dialogues) < 2:
            raise AblateError("build_zoo needs at least 2 dialogues (one is held out) or heldout_dialogues")
        dialogues, heldout_dialogues = list(dialogues[:-n]), list(dialogues[-n:])
    digests = {
        "tokenizer": digest_tokenizer(tokenizer), "texts": digest_texts(texts),
        "heldout_texts": digest_texts(heldout_texts), "dialogues": digest_dialogues(dialogues),
        "heldout_dialogues": digest_dialogues(heldout_dialogues), "pairs": digest_pairs(pairs),
        "heldout_pairs": digest_pairs(heldout_pairs),
    }
    hashes = entry_hashes(spec, seed, digests)
    ctx = _Context(spec, out, tokenizer, texts, dialogues, heldout_dialogues, pairs, heldout_texts, heldout_pairs,
                   seed, hashes)
    builders: dict[str, Callable[[Path], dict]] = {
        "llm-base": ctx.build_llm_base,
        "llm-instruct": ctx.build_llm_instruct,
        "vit-large": lambda tmp: ctx.build_vit(tmp, spec.vision_large, offset=2, name="vit-large"),
        "vit-small": lambda tmp: ctx.build_vit(tmp, spec.vision_small, offset=3, name="vit-small"),
    }
    results: dict[str, dict[str, Any]] = {}
    with _threads(spec.threads):
        for name in [e for e in ENTRIES if e in wanted]:  # llm-base first: llm-instruct starts from its folder
            folder = out / name
            problem = verify_entry(folder)
            manifest = read_manifest(folder) if problem is None else None
            if not force and manifest is not None and manifest.get("spec_hash") == hashes[name]:
                results[name] = {"path": str(folder), "built": False, "quality": manifest.get("quality", {})}
                continue
            reason = "forced" if force else problem or "spec or inputs changed"
            log.info("zoo: building %s (%s)", name, reason)
            quality = _build_entry(name, builders[name], out, hashes[name], spec, seed, reason, store)
            results[name] = {"path": str(folder), "built": True, "quality": quality}
    return results


DEPENDS_ON = {"llm-instruct": "llm-base"}  # an entry trained on top of another entry's saved weights


def with_dependencies(entries: Iterable[str] | None) -> set[str]:
    """`entries` (every entry when None) plus the entries they are built from."""
    wanted = set(ENTRIES if entries is None else entries)
    unknown = wanted - set(ENTRIES)
    if unknown:
        raise AblateError(f"unknown zoo entries {sorted(unknown)}; known: {', '.join(ENTRIES)}")
    return wanted | {DEPENDS_ON[e] for e in wanted if e in DEPENDS_ON}


# The order in which a grid's workers take up missing entries: each LM chain and the large ViT (the longest build)
# start at once, the small ViT last (it takes about as long as the two LMs together).
BUILD_ORDER = ("llm-base", "vit-large", "llm-instruct", "vit-small")


def build_chains(entries: Iterable[str] | None) -> list[list[str]]:
    """The wanted entries grouped into independent chains (each in dependency order) that can build in parallel."""
    wanted = with_dependencies(entries)
    # The large ViT is the longest build; the small one follows the two LMs (about as long together).
    chains = [[e for e in ("llm-base", "llm-instruct", "vit-small") if e in wanted], ["vit-large"] * ("vit-large"
                                                                                                   in wanted)]
    return [c for c in chains if c]


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Run with `n` torch threads (0: unchanged), restoring the previous setting afterwards."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _build_entry(name: str, build: Callable[[Path], dict], out: Path, spec_hash: str, spec: ZooSpec, seed: int,
                 reason: str, store: Store | None) -> dict[str, float]:
    """Build one entry in a temp folder, write its manifest last, move it into place, log it to MLflow."""
    client = run_id = None
    if store is not None:
        client = store.client()
        exp = experiment_id(client, store, EXPERIMENT)
        tags = {"ablate.kind": "zoo", "ablate.zoo_entry": name, "ablate.spec_hash": spec_hash,
                "ablate.zoo_dir": str(out.resolve()), "ablate.build_reason": reason, **provenance()}
        run_id = client.create_run(exp, run_name=name, tags=tags).info.run_id
        log_batch(client, run_id, params={**spec.params(), "seed": seed, "entry": name})
    tmp = temp_folder(out, name)
    start = time.perf_counter()
    try:
        result = build(tmp)
        quality = {**result["quality"], "build_seconds": round(time.perf_counter() - start, 2)}
        if "config" in result:  # the ViT's config.json holds the quality too, as the contract says
            (tmp / "config.json").write_text(json.dumps({**result["config"], "quality": quality}, indent=2))
        write_manifest(tmp, name, spec_hash, quality, {"kind": name.split("-")[0], "seed": seed})
        install(tmp, out / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if client is not None:
            finish(client, run_id, ok=False)
        raise
    if client is not None:
        log_batch(client, run_id, metrics=quality)
        log_metric_series(client, run_id, [("train/loss", loss, step) for step, loss in result["history"]])
        finish(client, run_id)
    return quality


class _Context:
    """The inputs of one build_zoo call, prepared lazily and shared by the entry builders."""

    def __init__(self, spec: ZooSpec, out: Path, tokenizer, texts, dialogues, heldout_dialogues, pairs,
                 heldout_texts, heldout_pairs, seed: int, hashes: dict[str, str]) -> None:
        self.spec, self.out, self.tok, self.seed, self.hashes = spec, out, tokenizer, seed, hashes
        self.texts, self.dialogues, self.heldout_dialogues = texts, dialogues, heldout_dialogues
        self.pairs, self.heldout_texts, self.heldout_pairs = pairs, heldout_texts, heldout_pairs
        self.pad_id = lm.special_ids(tokenizer)[0]
        self.bf16 = spec.precision == "bf16"

    def _gen(self, offset: int) -> torch.Generator:
        torch.manual_seed(self.seed * 1000 + offset)  # model init
        return torch.Generator().manual_seed(self.seed * 1000 + offset)  # data order

    def _heldout(self) -> tuple[torch.Tensor, list[dict]]:
        blocks = lm.pack(self.tok, self.heldout_texts, self.spec.seq_len)
        dialogues = [encode_dialogue(self.tok, d, self.spec.dialogue_len) for d in self.heldout_dialogues]
        return blocks, dialogues

    def _lm_quality(self, model, blocks: torch.Tensor, dialogues: list[dict]) -> dict[str, float]:
        return {"heldout_ppl": lm.perplexity(model, blocks), "dialogue_loss": lm.dialogue_loss(model, dialogues,
                                                                                               self.pad_id),
                "vocab_size": float(len(self.tok))}

    def _save_lm(self, model, tmp: Path) -> None:
        model.save_pretrained(tmp)
        self.tok.save_pretrained(tmp)

    def build_llm_base(self, tmp: Path) -> dict:
        gen = self._gen(0)
        model = lm.new_lm(self.spec.llm, self.tok)
        blocks = lm.pack(self.tok, self.texts, self.spec.seq_len)
        held_blocks, held_dialogues = self._heldout()
        init_ppl = lm.perplexity(model, held_blocks)
        step_loss = lm.lm_step_loss(model, blocks, self.spec.batch_size, gen)
        history = fit(model, step_loss, self.spec.lm_steps, self.spec.lr, bf16=self.bf16, name="llm-base")
        quality = {**self._lm_quality(model, held_blocks, held_dialogues), "init_ppl": init_ppl,
                   "train_tokens": float(blocks.numel())}
        self._save_lm(model, tmp)
        return {"quality": quality, "history": history}

    def build_llm_instruct(self, tmp: Path) -> dict:
        gen = self._gen(1)
        base = self.out / "llm-base"
        if verify_entry(base, deep=False) is not None:
            raise AblateError(f"zoo entry llm-base at {base} is not complete; llm-instruct is built from it")
        # Loaded through the same path a real local checkpoint takes.
        model = AutoModelForCausalLM.from_pretrained(str(base), local_files_only=True)
        examples = [encode_dialogue(self.tok, d, self.spec.dialogue_len) for d in self.dialogues]
        examples = [e for e in examples if any(x != lm.IGNORE_INDEX for x in e["labels"])]
        if not examples:
            raise AblateError(f"no dialogue has an assistant token within dialogue_len={self.spec.dialogue_len}")
        held_blocks, held_dialogues = self._heldout()
        blocks = lm.pack(self.tok, self.texts, self.spec.seq_len)
        step_loss = lm.instruct_step_loss(model, examples, blocks, self.spec.batch_size, self.pad_id, gen)
        # Half the base's learning rate: tune the behaviour without overwriting what pretraining learned.
        history = fit(model, step_loss, self.spec.instruct_steps, self.spec.lr / 2, bf16=self.bf16,
                      name="llm-instruct")
        self._save_lm(model, tmp)
        return {"quality": self._lm_quality(model, held_blocks, held_dialogues), "history": history}

    def build_vit(self, tmp: Path, vision, offset: int, name: str = "vit") -> dict:
        gen = self._gen(offset)
        sizes = [vision.image_size] + ([vision.high_res_size] if self.spec.clip_high_res_every else [])
        train = clip.PairData(self.pairs, sizes, self.tok, self.pad_id)
        held = clip.PairData(self.heldout_pairs, sizes, self.tok, self.pad_id)
        aux = train.aux_spec() if self.spec.clip_aux_weight else None
        model = clip.Clip(vision, len(self.tok), self.spec.embed_dim, aux)
        step_loss = clip.clip_step_loss(model, train, self.spec.clip_batch_size, gen, self.spec.clip_high_res_every,
                                        self.spec.clip_aux_weight, EMPTY_IS_UNKNOWN)
        history = fit(model, step_loss, self.spec.clip_steps, self.spec.clip_lr, weight_decay=0.05, bf16=self.bf16,
                      name=name)
        quality = {**clip.retrieval(model, held), "temperature": 1 / model.logit_scale.detach().exp().item()}
        quality |= clip.aux_accuracy(model, held, sizes[0])
        if len(sizes) > 1:
            high = clip.retrieval(model, held, sizes[-1])
            quality |= {"retrieval_top1_high_res": high["retrieval_top1"], "high_res_size": float(sizes[-1])}
            quality |= {f"{k}_high_res": v for k, v in clip.aux_accuracy(model, held, sizes[-1]).items()}
        # Only the timm model is kept: exactly what `timm.create_model(**kwargs).load_state_dict` expects.
        save_file({k: v.contiguous() for k, v in model.vit.state_dict().items()}, str(tmp / VIT_WEIGHTS))
        config = {"create_model": clip.timm_kwargs(vision), "input": {"range": [-1, 1], "mean": clip.MEAN,
                                                                      "std": clip.STD}}
        return {"quality": quality, "history": history, "config": config}
