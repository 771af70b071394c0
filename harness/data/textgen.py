"""Text without images: documents about the world's facts, text-only instructions, and noisy alt-text.

Documents teach a language model the world's facts and caption grammar (LM pretraining). Text-only instructions
are answerable without an image (arithmetic, facts, word facts, and questions about a scene described in the
instruction itself: reading comprehension, which is what a real instruction-tuned LLM brings to a multimodal model
and a base LLM lacks); a third of them end in one of the evaluation format instructions, which is how an
instruction-tuned LM (and text co-training) learns to obey them. Noisy alt-text mimics web alt-text: wrong
attributes, keyword salad and junk tokens from `NOISE_TOKENS`.
"""

from __future__ import annotations

import random

from harness.data.scenes import IMAGE_QUESTIONS, corners_fact, detailed_caption, name, sample_scene, short_caption
from harness.data.vocab import (
    COLOURS,
    CORNERS,
    FORMAT_INSTRUCTIONS,
    NOISE_TOKENS,
    NUMBER_WORDS,
    OPPOSITES,
    PLACE_PHRASE,
    PLACES,
    SHAPES,
    article,
)


def place_facts(place: str) -> list[str]:
    """Sentences about one place."""
    f, at = PLACES[place], PLACE_PHRASE[place]
    sents = [f"It is {f['feel']} {at}.", f"The ground {at} is {f['ground']}.", f"You can see {f['thing']} {at}."]
    indoors = f"{article(place).capitalize()} {place} is indoors."
    sents.append(indoors if f["indoors"] else f"The sky {at} is {f['sky']}.")
    return sents


def _fact(rng: random.Random) -> str:
    kind = rng.choice(["place", "shape", "sum", "opposite", "next", "colour"])
    if kind == "place":
        return rng.choice(place_facts(rng.choice(list(PLACES))))
    if kind == "shape":
        return corners_fact(rng.choice(SHAPES))
    if kind == "sum":
        a, b = rng.randint(0, 5), rng.randint(0, 4)
        return f"{a} plus {b} is {a + b}." if rng.random() < 0.5 else \
            f"{NUMBER_WORDS[a].capitalize()} plus {NUMBER_WORDS[b]} is {NUMBER_WORDS[a + b]}."
    if kind == "opposite":
        w = rng.choice(list(OPPOSITES))
        return f"The opposite of {w} is {OPPOSITES[w]}."
    if kind == "next":
        n = rng.randint(0, 8)
        return f"After {n} comes {n + 1}."
    c = rng.choice(list(COLOURS))
    return f"{c.capitalize()} is a colour, and {rng.choice(SHAPES)} is a shape."


def text_document(rng: random.Random) -> str:
    """A short plain-text document: a few facts, and a scene described in words."""
    sents = [_fact(rng) for _ in range(rng.randint(2, 4))]
    scene = sample_scene(rng)
    sents.insert(rng.randint(0, len(sents)), detailed_caption(scene) if rng.random() < 0.6 else
                 short_caption(scene).capitalize())
    return " ".join(sents)


# Questions a detailed caption answers: every category but Spatial (the caption names quadrants, not grid cells).
SCENE_QA_CATEGORIES = ("OCR", "Count", "Reason", "Place", "Color", "Action", "Others")
SCENE_QA_TEMPLATES = ("Here is a scene. {scene} {question}", "Read this: {scene} Question: {question}",
                      "{scene} Based on this description: {question}", "Picture this. {scene} {question}",
                      "Description: {scene} {question}", "{scene} {question}")
SCENE_QA_SHARE = 0.4  # of the text-only instructions


def scene_qa(rng: random.Random) -> tuple[str, str, str]:
    """A question about a scene described in words: (instruction, answer, the answer's format)."""
    while True:
        category = rng.choice(SCENE_QA_CATEGORIES)
        scene = sample_scene(rng, sign=True if category == "OCR" else None,
                             actor=True if category == "Action" else None)
        qa = IMAGE_QUESTIONS[category](rng, scene)
        if qa:
            break
    question, answer = qa
    text = rng.choice(SCENE_QA_TEMPLATES).format(scene=detailed_caption(scene), question=question)
    fmt = "yes_no" if answer in ("yes", "no") else "one_word" if " " not in answer else "short_answer"
    return text, answer, fmt


def text_instruction(rng: random.Random) -> tuple[str, str]:
    """A (question, answer) answerable without an image; sometimes with a format instruction appended."""
    if rng.random() < SCENE_QA_SHARE:
        q, ans, fmt = scene_qa(rng)
        return (f"{q} {FORMAT_INSTRUCTIONS[fmt]}" if rng.random() < 0.35 else q), ans
    kind = rng.choice(["plus", "minus", "times", "sky", "feel", "corners", "opposite", "next", "bigger",
                       "kind", "describe"])
    fmt = None
    if kind == "plus":
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        q, ans, fmt = f"What is {a} plus {b}?", str(a + b), "short_answer"
    elif kind == "minus":
        a = rng.randint(1, 9)
        b = rng.randint(0, a)
        q, ans, fmt = f"What is {a} minus {b}?", str(a - b), "short_answer"
    elif kind == "times":
        a, b = rng.randint(0, 5), rng.randint(0, 5)
        q, ans, fmt = f"What is {a} times {b}?", str(a * b), "short_answer"
    elif kind == "sky":
        place = rng.choice([p for p in PLACES if not PLACES[p]["indoors"]])
        at = "on a snowy day" if place == "snow" else PLACE_PHRASE[place]
        q = f"What colour is the sky {at}?"
        ans, fmt = PLACES[place]["sky"], "one_word"
    elif kind == "feel":
        place, asked = rng.choice(list(PLACES)), rng.choice(["cold", "hot", "warm", "mild"])
        ans = "yes" if PLACES[place]["feel"] == asked else "no"
        q, fmt = f"Is it {asked} {PLACE_PHRASE[place]}?", "yes_no"
    elif kind == "corners":
        shape = rng.choice(SHAPES)
        q, ans, fmt = f"How many corners does {article(shape)} {shape} have?", str(CORNERS[shape]), "short_answer"
    elif kind == "opposite":
        w = rng.choice(list(OPPOSITES))
        q, ans, fmt = f"What is the opposite of {w}?", OPPOSITES[w], "one_word"
    elif kind == "next":
        n = rng.randint(0, 8)
        q, ans, fmt = f"Which number comes after {n}?", str(n + 1), "short_answer"
    elif kind == "bigger":
        a, b = rng.sample(range(10), 2)
        q, ans, fmt = f"Is {a} bigger than {b}?", "yes" if a > b else "no", "yes_no"
    elif kind == "kind":
        word = rng.choice(list(COLOURS) + list(SHAPES) + list(PLACES))
        ans = "colour" if word in COLOURS else "shape" if word in SHAPES else "place"
        q, fmt = f"Is {word} a colour, a shape or a place?", "one_word"
    else:
        place = rng.choice(list(PLACES))
        q, ans = f"Tell me about {PLACE_PHRASE[place].split(' ', 1)[1]}.", " ".join(place_facts(place))
    if fmt and rng.random() < 0.35:
        q = f"{q} {FORMAT_INSTRUCTIONS[fmt]}"
    return q, ans


def noisy_alt_text(rng: random.Random, scene: dict) -> str:
    """Web-style alt-text for a scene: wrong attributes, keyword salad, and always some junk tokens."""
    junk = [rng.choice(NOISE_TOKENS) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.4:  # keyword salad
        words = [w for o in scene["objects"] for w in name(o).split()] + [scene["place"]] + junk
        rng.shuffle(words)
        return " ".join(words)
    caption = short_caption(scene).rstrip(".")
    if rng.random() < 0.5:  # a wrong attribute
        o = rng.choice(scene["objects"])
        kind = rng.choice(["colour", "shape", "place"])
        if kind == "colour":
            caption = caption.replace(o["colour"], rng.choice([c for c in COLOURS if c != o["colour"]]), 1)
        elif kind == "shape":
            caption = caption.replace(o["shape"], rng.choice([s for s in SHAPES if s != o["shape"]]), 1)
        else:
            caption = caption.replace(scene["place"], rng.choice([p for p in PLACES if p != scene["place"]]))
    if rng.random() < 0.3:
        junk.append(f"{rng.randint(100, 9999)}")
    return " ".join([caption, *junk] if rng.random() < 0.6 else [*junk, caption])
