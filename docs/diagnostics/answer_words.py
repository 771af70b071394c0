"""How far apart are the answer words in a zoo LLM's output layer, and can it copy a colour from its context?
(docs/findings.md, section 2)

For each group of answer words (colours, shapes, actions, places, sign characters, digits) it prints the mean and
largest cosine between their output-embedding rows; then a copy test: after a scene described in words,
"The <shape> is" -> which colour word ranks first (chance: 1 in 7).

    python docs/diagnostics/answer_words.py /tmp/o_v6/cache/zoo/small-*/llm-base
"""

from __future__ import annotations

import random
import sys

import torch
import transformers

from harness.data.scenes import detailed_caption, sample_scene
from harness.data.vocab import ACTIONS, COLOURS, PLACES, SHAPES, SIGN_CHARS, SIZES


def word_ids(tok, words) -> list[int]:
    ids = [tok(w, add_special_tokens=False).input_ids for w in words]
    return [i[0] for i in ids if len(i) == 1]


def similarity(model, tok) -> None:
    rows = model.get_output_embeddings().weight.detach()
    groups = {"colour": list(COLOURS), "shape": list(SHAPES), "action": list(ACTIONS), "size": list(SIZES),
              "place": list(PLACES), "sign character": [c.lower() for c in SIGN_CHARS],
              "digit": [str(i) for i in range(10)]}
    for group, words in groups.items():
        v = torch.nn.functional.normalize(rows[word_ids(tok, words)], dim=-1)
        cos = (v @ v.T)[~torch.eye(len(v), dtype=torch.bool)]
        print(f"  {group:15s} {len(v):2d} words: output-row cosine mean {cos.mean():.2f}, max {cos.max():.2f}")


@torch.no_grad()
def copy_rate(model, tok, n: int = 300) -> tuple[int, int]:
    """(right, asked): after a scene in words, "The <shape> is" ranks the shape's colour first among the colours."""
    colours = list(COLOURS)
    ids = word_ids(tok, colours)
    rng, hits, asked = random.Random(7), 0, 0
    for _ in range(n):
        scene = sample_scene(rng, actor=False)
        shapes = [o["shape"] for o in scene["objects"]]
        unique = [o for o in scene["objects"] if shapes.count(o["shape"]) == 1]
        if not unique:
            continue
        obj = rng.choice(unique)
        x = tok(f"{detailed_caption(scene)} The {obj['shape']} is", return_tensors="pt").input_ids
        hits += colours[model(x).logits[0, -1, ids].argmax()] == obj["colour"]
        asked += 1
    return int(hits), asked


def copy_test(model, tok) -> None:
    hits, asked = copy_rate(model, tok)
    print(f"  copy test: the right colour ranks first in {hits}/{asked} = {100 * hits / asked:.0f} % "
          f"(chance {100 / len(COLOURS):.0f} %)")


def main() -> None:
    for folder in sys.argv[1:]:
        tok = transformers.PreTrainedTokenizerFast.from_pretrained(folder)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
        print(folder)
        similarity(model, tok)
        copy_test(model, tok)


if __name__ == "__main__":
    main()
