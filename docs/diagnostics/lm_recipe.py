"""Does a larger, copy-rich text corpus or a longer LM budget teach the small zoo LLM to name a colour from its
context? (docs/findings.md, section 2)

Trains an LLM of the `small` preset from scratch on one text corpus, the way the zoo does (`harness/zoo/lm.py`,
`harness/zoo/loop.py`: packed blocks, AdamW, bf16 autocast), then instruction-tunes it on the world's 4,000 text
instructions, and prints after each phase:
- the copy test of `answer_words.py` (after a scene in words, "The <shape> is" -> the right colour ranks first;
  chance 1 in 7);
- after tuning, the reading test: questions about a scene described in words (the world's `scene_qa`), greedy
  answers, Color against the other categories.

Corpora: `shipped` (the world's text documents, as the zoo trains on) or `recall` (1-2 facts, a scene in words,
then sentences that refer back to its objects: "The star is pink.", "What colour is the star? Pink.").

    python docs/diagnostics/lm_recipe.py --tokenizer <zoo>/llm-base --corpus recall --docs 20000 --steps 2400

One thread; about 0.23 s an LM step and 0.5 s an instruction step at `small` on the development machine.
"""

from __future__ import annotations

import argparse
import json
import random
import re

import torch
import transformers
from answer_words import copy_rate  # the same copy test, beside this file

from harness.data.chat import encode_dialogue, encode_prompt
from harness.data.scenes import detailed_caption, name, sample_scene, where
from harness.data.textgen import _fact, scene_qa, text_document, text_instruction
from harness.data.vocab import article
from harness.resolve import preset_model
from harness.zoo import lm
from harness.zoo.loop import fit


def recall_sentences(rng: random.Random, scene: dict) -> list[str]:
    out = []
    for o in rng.sample(scene["objects"], rng.randint(1, len(scene["objects"]))):
        k = rng.random()
        if k < 0.3:
            out.append(f"The {o['shape']} is {o['colour']}.")
        elif k < 0.5:
            out.append(f"The {o['colour']} one is {article(o['shape'])} {o['shape']}.")
        elif k < 0.7:
            out.append(f"What colour is the {o['shape']}? {o['colour'].capitalize()}.")
        elif k < 0.85:
            out.append(f"At the {where(o)} is the {name(o)}.")
        else:
            out.append(f"The {name(o)} is {o['size']}.")
    return out


def document(corpus: str, i: int) -> str:
    rng = random.Random(f"0/text/{i}")  # the world's own seed stream for text document i
    if corpus == "shipped":
        return text_document(rng)
    scene_first = [_fact(rng) for _ in range(rng.randint(1, 2))]
    scene = sample_scene(rng)
    return " ".join([*scene_first, detailed_caption(scene), *recall_sentences(rng, scene)])


def copy_test(model, tok) -> float:
    hits, asked = copy_rate(model, tok)
    return hits / asked


@torch.no_grad()
def reading_test(model, tok, n: int = 280) -> dict[str, float]:
    def words(s: str) -> list[str]:
        return re.sub(r"[^a-z0-9 ]", "", s.lower()).split()

    rng, hits = random.Random(99), {"Color": [], "other categories": []}
    for _ in range(n):
        question, answer, _ = scene_qa(rng)
        ids = torch.tensor([encode_prompt(tok, question)])
        out = model.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
        said = words(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
        key = "Color" if "colour" in question.lower() else "other categories"
        hits[key].append(said[: len(words(answer))] == words(answer))
    return {k: sum(v) / len(v) for k, v in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", required=True, help="a zoo LLM folder of the world (its tokenizer files)")
    parser.add_argument("--corpus", choices=["shipped", "recall"], default="shipped")
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=800, help="LM pretraining steps (the preset: 800)")
    parser.add_argument("--seq", type=int, default=64, help="tokens per packed block (the preset: 64)")
    parser.add_argument("--instruct-steps", type=int, default=800)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(args.tokenizer)
    blocks = lm.pack(tok, [document(args.corpus, i) for i in range(args.docs)], args.seq)
    held = lm.pack(tok, [document(args.corpus, 10**6 + i) for i in range(200)], args.seq)
    torch.manual_seed(0)
    model = lm.new_lm(preset_model("small").llm, tok)
    fit(model, lm.lm_step_loss(model, blocks, 32, torch.Generator().manual_seed(0)), args.steps, 1.5e-3)
    result = {**vars(args), "train_tokens": blocks.numel(), "heldout_ppl": lm.perplexity(model, held),
              "copy_base": copy_test(model, tok)}
    print(json.dumps(result), flush=True)
    if args.instruct_steps:
        dialogues = [[text_instruction(random.Random(f"0/text_instructions/{i}"))] for i in range(4000)]
        examples = [encode_dialogue(tok, d, 96) for d in dialogues]
        step_loss = lm.instruct_step_loss(model, examples, blocks, 32, tok.pad_token_id,
                                          torch.Generator().manual_seed(1))
        fit(model, step_loss, args.instruct_steps, 1.5e-3 / 2)
        result.update(copy_instruct=copy_test(model, tok), reading=reading_test(model, tok))
        print(json.dumps(result))


if __name__ == "__main__":
    main()
