"""Backbone zoo tests: one tiny zoo built once from a synthetic corpus (coloured squares, a tokenizer trained here).

Checks formats (loadable by transformers / timm exactly as real checkpoints), reuse, corruption detection and
rebuild, `resolve_source`, MLflow logging to a real sqlite store, and that training beats the untrained models.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from harness.config.schema import LLMConfig, VisionConfig
from harness.errors import AblateError
from harness.tracking import Store
from harness.zoo import ENTRIES, MANIFEST, ZooSpec, build_zoo, describe_zoo, resolve_source, zoo_complete
from harness.zoo.spec import entry_hashes

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 205, 30)}
PLACES = {"left": 0, "right": 1}
SIZE = 16


def square(colour: str, place: str, rng: random.Random) -> Image.Image:
    im = Image.new("RGB", (SIZE, SIZE), (200 + rng.randint(0, 40),) * 3)
    x = 1 + PLACES[place] * SIZE // 2 + rng.randint(0, 1)
    im.paste(COLOURS[colour], (x, 4, x + 6, 10))
    return im


def corpus(seed: int = 0) -> dict:
    rng = random.Random(seed)

    def pair():
        c, p = rng.choice(list(COLOURS)), rng.choice(list(PLACES))
        return square(c, p, rng), f"a {c} square on the {p}"

    def doc():
        return " ".join(f"the {rng.choice(list(COLOURS))} square is on the {rng.choice(list(PLACES))} ."
                        for _ in range(rng.randint(2, 4)))

    def dialogue():
        c = rng.choice(list(COLOURS))
        return [(f"what colour is the {c} square ?", c)] * rng.randint(1, 2)

    return {
        "texts": [doc() for _ in range(300)], "dialogues": [dialogue() for _ in range(120)],
        "pairs": [pair() for _ in range(256)], "heldout_texts": [doc() for _ in range(40)],
        "heldout_pairs": [pair() for _ in range(64)],
    }


def train_tokenizer(data: dict) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    chat = [f"USER: {q} ASSISTANT: {a}" for d in data["dialogues"] for q, a in d]
    texts = data["texts"] + [c for _, c in data["pairs"]] + chat
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["<pad>", "<s>", "</s>", "<unk>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


SPEC = ZooSpec(
    llm=LLMConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, max_positions=64),
    vision_large=VisionConfig(image_size=SIZE, patch_size=8, width=32, depth=2, heads=2),
    vision_small=VisionConfig(image_size=SIZE, patch_size=8, width=16, depth=1, heads=2),
    lm_steps=60, instruct_steps=30, clip_steps=60, batch_size=16, lr=3e-3, seq_len=32, clip_batch_size=64,
    clip_lr=3e-3, embed_dim=32, precision="fp32",
)


@dataclasses.dataclass
class Built:
    root: Path
    zoo: Path
    store: Store
    tokenizer: PreTrainedTokenizerFast
    data: dict
    result: dict

    def build(self, zoo: Path | None = None, **kwargs) -> dict:
        return build_zoo(SPEC, zoo or self.zoo, self.tokenizer, **self.data, **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    root = tmp_path_factory.mktemp("zoo")
    store = Store(root / "out")
    store.create()
    data = corpus()
    tok = train_tokenizer(data)
    result = build_zoo(SPEC, root / "zoo", tok, **data, store=store)
    return Built(root, root / "zoo", store, tok, data, result)


def test_llm_entries_load_as_save_pretrained_folders(built):
    for name in ("llm-base", "llm-instruct"):
        folder = Path(resolve_source(f"zoo:{name}", built.zoo))
        assert folder == built.zoo / name and built.result[name]["built"]
        model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
        tok = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
        assert tok.get_vocab() == built.tokenizer.get_vocab()
        assert model.config.hidden_size == SPEC.llm.hidden_size and model.config.vocab_size == len(tok)
        ids = torch.tensor([tok.encode("the red square is on the left .")])
        assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(tok))


def test_vit_entries_load_with_timm_strictly(built):
    for name, vision in (("vit-large", SPEC.vision_large), ("vit-small", SPEC.vision_small)):
        weights = Path(resolve_source(f"zoo:{name}", built.zoo))
        assert weights.name == "model.safetensors"
        config = json.loads((weights.parent / "config.json").read_text())
        kwargs = config["create_model"]
        assert kwargs["pretrained"] is False and kwargs["embed_dim"] == vision.width
        assert config["quality"]["retrieval_top1"] == built.result[name]["quality"]["retrieval_top1"]
        vit = timm.create_model(**kwargs)
        vit.load_state_dict(load_file(str(weights)), strict=True)
        assert vit(torch.zeros(2, 3, SIZE, SIZE)).shape == (2, vision.width)
        assert vit(torch.zeros(1, 3, 2 * SIZE, 2 * SIZE)).shape == (1, vision.width)  # dynamic_img_size


def test_manifest_records_every_file_and_the_quality(built):
    for name in ENTRIES:
        manifest = json.loads((built.zoo / name / MANIFEST).read_text())
        files = {p.name for p in (built.zoo / name).iterdir() if p.name != MANIFEST}
        assert manifest["entry"] == name and set(manifest["files"]) == files
        assert all(len(r["sha256"]) == 64 and r["size"] > 0 for r in manifest["files"].values())
        assert manifest["quality"] == built.result[name]["quality"]
    assert zoo_complete(built.zoo)
    assert not list(built.zoo.glob(".tmp-*"))  # temp build folders were renamed away


def test_training_beats_the_untrained_models(built):
    base, instruct = built.result["llm-base"]["quality"], built.result["llm-instruct"]["quality"]
    assert base["heldout_ppl"] < base["init_ppl"] / 2
    assert instruct["dialogue_loss"] < base["dialogue_loss"]
    for name in ("vit-large", "vit-small"):
        q = built.result[name]["quality"]
        assert q["heldout_unique_captions"] == 8
        assert q["retrieval_top1_unique"] > 2 * q["retrieval_chance_unique"], q


def test_second_build_is_a_noop(built):
    mtimes = {p: p.stat().st_mtime_ns for p in built.zoo.rglob("*")}
    start = time.perf_counter()
    again = built.build()
    assert time.perf_counter() - start < 5
    assert not any(r["built"] for r in again.values())
    assert {k: r["quality"] for k, r in again.items()} == {k: r["quality"] for k, r in built.result.items()}
    assert {p: p.stat().st_mtime_ns for p in built.zoo.rglob("*")} == mtimes


def test_damaged_entries_are_detected_refused_and_rebuilt(built, tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(built.zoo, zoo)
    weights = zoo / "vit-small" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF  # same size, different content
    weights.write_bytes(bytes(raw))
    (zoo / "llm-instruct" / "config.json").unlink()
    (zoo / "vit-large" / MANIFEST).unlink()  # an interrupted build
    assert not zoo_complete(zoo)
    with pytest.raises(AblateError, match=r"vit-small.*sha256.*ablate zoo build"):
        resolve_source("zoo:vit-small", zoo)
    with pytest.raises(AblateError, match=r"llm-instruct.*is missing config.json"):
        resolve_source("zoo:llm-instruct", zoo)
    with pytest.raises(AblateError, match=r"vit-large.*no valid zoo_entry.json"):
        resolve_source("zoo:vit-large", zoo)
    assert resolve_source("zoo:llm-base", zoo) == str(zoo / "llm-base")  # intact entries stay usable

    result = built.build(zoo)
    assert {k for k, r in result.items() if r["built"]} == {"vit-small", "llm-instruct", "vit-large"}
    assert zoo_complete(zoo)
    timm.create_model(**json.loads((zoo / "vit-small" / "config.json").read_text())["create_model"]).load_state_dict(
        load_file(str(weights)), strict=True)


def test_resolve_source_errors_and_passthrough(built, tmp_path):
    assert resolve_source("random", tmp_path) == "random"
    assert resolve_source(str(built.zoo / "llm-base"), tmp_path) == str(built.zoo / "llm-base")
    with pytest.raises(AblateError, match=r"'/no/such/folder' is not 'random'.*nothing is downloaded"):
        resolve_source("/no/such/folder", tmp_path)
    with pytest.raises(AblateError, match=r"unknown zoo entry 'llm-bas'.*did you mean 'llm-base'"):
        resolve_source("zoo:llm-bas", built.zoo)
    with pytest.raises(AblateError, match=r"zoo entry 'llm-base' at .* is missing; rebuild it with"):
        resolve_source("zoo:llm-base", tmp_path / "empty")


def test_each_build_is_an_mlflow_run(built):
    client = built.store.client()
    exp = client.get_experiment_by_name("zoo")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == set(ENTRIES)  # the no-op second build logged nothing
    for name, run in runs.items():
        assert run.info.status == "FINISHED" and run.data.tags["ablate.zoo_entry"] == name
        assert run.data.params["lm_steps"] == str(SPEC.lm_steps) and run.data.params["llm.hidden_size"] == "32"
        assert run.data.metrics["build_seconds"] > 0
        for key, value in built.result[name]["quality"].items():
            assert run.data.metrics[key] == pytest.approx(value)
        assert client.get_metric_history(run.info.run_id, "train/loss")


def test_describe_zoo_lists_every_entry(built, tmp_path):
    lines = describe_zoo(built.zoo)
    assert [line.split()[0] for line in lines] == list(ENTRIES)
    assert all(" ok " in line for line in lines)
    assert "held-out ppl" in lines[0] and "retrieval top-1" in lines[2]
    assert all("is missing" in line for line in describe_zoo(tmp_path))


def test_spec_changes_rebuild_only_the_affected_entries():
    digests = dict.fromkeys(("tokenizer", "texts", "heldout_texts", "dialogues", "heldout_dialogues", "pairs",
                             "heldout_pairs"), "x")
    before = entry_hashes(SPEC, 0, digests)
    changed = lambda **kw: {k for k, v in entry_hashes(dataclasses.replace(SPEC, **kw), 0, digests).items()  # noqa: E731
                            if v != before[k]}
    assert changed(clip_steps=61) == {"vit-large", "vit-small"}
    assert changed(lm_steps=61) == {"llm-base", "llm-instruct"}
    assert changed(instruct_steps=31) == {"llm-instruct"}
    assert changed(vision_small=dataclasses.replace(SPEC.vision_small, depth=2)) == {"vit-small"}
    # Fields that do not shape the weights (a role, where weights come from) do not rebuild anything.
    assert changed(vision_small=dataclasses.replace(SPEC.vision_small, weights="zoo:vit-small", size="small")) == set()
    assert entry_hashes(SPEC, 1, digests)["llm-base"] != before["llm-base"]


def test_scale_presets_give_the_zoo_budgets_and_architectures():
    from harness.assets import zoo_spec

    spec = zoo_spec("tiny")  # budgets (harness/scales/tiny.yaml `zoo:`) within the 3-minute tiny limit
    assert spec.lm_steps > 0 and spec.clip_steps > 0 and spec.vision_large.width > spec.vision_small.width
    with pytest.raises(AblateError, match="scale 'paper' has no miniature zoo"):
        zoo_spec("paper")


def test_a_run_that_asks_for_other_sizes_gets_a_zoo_at_those_sizes(tmp_path):
    """An override of the LLM's width builds a zoo LLM of that width; it never loads the preset's under its name."""
    from harness.assets import zoo_sizes, zoo_spec
    from harness.resolve import resolve

    preset = zoo_spec("tiny")
    lynx = resolve("lynx", "tiny").config.model
    assert zoo_spec("tiny", lynx) == preset  # the preset's own sizes: the same spec, so the same zoo folder
    assert zoo_spec("tiny", resolve("w_llama", "tiny").config.model) == preset
    wide = resolve("lynx", "tiny", cli={"model.llm.hidden_size": 128, "model.llm.intermediate_size": 256}).config.model
    spec = zoo_spec("tiny", wide)
    assert (spec.llm.hidden_size, spec.llm.intermediate_size) == (128, 256)
    assert spec.vision_large == preset.vision_large and zoo_sizes(wide) != zoo_sizes(lynx)
    # Weights of other sizes than the config's are refused, whatever the source.
    from harness.model.llm import build_llm, llm_config

    small = dataclasses.replace(lynx.llm, source=str(tmp_path / "llm"))
    AutoModelForCausalLM.from_config(llm_config(small, 100, 0, 1, 2)).save_pretrained(tmp_path / "llm")
    assert build_llm(small, 100, 0, 1, 2).config.hidden_size == small.hidden_size
    with pytest.raises(AblateError, match=r"model.llm.hidden_size=128 but the weights have \d+"):
        build_llm(dataclasses.replace(small, hidden_size=128), 100, 0, 1, 2)


def test_dialogues_use_the_harness_chat_format(built):
    from harness.data.chat import IGNORE_INDEX, encode_dialogue, encode_example

    tok = built.tokenizer
    one = encode_dialogue(tok, [("what colour is the red square ?", "red")], 64)
    two = encode_dialogue(tok, [("what colour is the red square ?", "red")] * 2, 64)
    assert tok.decode(two["input_ids"]) == "<s> user : what colour is the red square ? assistant : red </s> " \
                                           "user : what colour is the red square ? assistant : red </s>"
    supervised = [t for t, label in zip(two["input_ids"], two["labels"], strict=True) if label != IGNORE_INDEX]
    assert supervised == [tok.convert_tokens_to_ids("red"), tok.eos_token_id] * 2
    assert two["input_ids"][: len(one["input_ids"])] == one["input_ids"]
    assert one == encode_example(tok, "what colour is the red square ?", "red", 64)
