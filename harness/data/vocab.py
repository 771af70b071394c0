"""The miniature world's vocabulary and facts: colours, shapes, places, actions, sign characters, junk tokens.

Everything the generator can say is built from these tables, so the tokenizer corpus, the text documents and the
question generators stay consistent. The facts (sky colour per place, corners per shape, ...) are what the text
documents teach the language model and what text-only instructions and "Reason" questions ask about.
"""

from __future__ import annotations

# Object colours (RGB). All objects in one scene have different colours, so "the red circle" is always unique.
COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 30),
    "purple": (140, 60, 180),
    "orange": (245, 130, 20),
    "pink": (245, 130, 190),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
CORNERS = {"circle": 0, "square": 4, "triangle": 3, "star": 5, "cross": 12}
SIZES = ("small", "big")

# Places: the scene's background. `sky` is the colour the background actually paints (kitchen: indoors).
PLACES = {
    "beach": {"sky": "blue", "ground": "sand", "feel": "warm", "indoors": False, "thing": "waves"},
    "forest": {"sky": "blue", "ground": "grass", "feel": "mild", "indoors": False, "thing": "trees"},
    "city": {"sky": "grey", "ground": "road", "feel": "mild", "indoors": False, "thing": "buildings"},
    "snow": {"sky": "grey", "ground": "snow", "feel": "cold", "indoors": False, "thing": "snowflakes"},
    "desert": {"sky": "orange", "ground": "sand", "feel": "hot", "indoors": False, "thing": "dunes"},
    "kitchen": {"sky": "none", "ground": "floor", "feel": "warm", "indoors": True, "thing": "tiles"},
}
# How a place is named inside a sentence ("on a beach", "in a forest", "in the snow").
PLACE_PHRASE = {
    "beach": "on a beach", "forest": "in a forest", "city": "in a city", "snow": "in the snow",
    "desert": "in a desert", "kitchen": "in a kitchen",
}

# Still-image actions, drawn as cartoon cues (speed lines, shadow, arcs); "resting" draws none.
ACTIONS = ("falling", "rolling", "jumping", "spinning")
# Video motions of one object across frames.
MOTIONS = ("left", "right", "up", "down", "still", "appears", "disappears")
DIRECTIONS = ("left", "right", "up", "down")
DIRECTION_PHRASE = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}

# Characters a sign can show (5x7 bitmap glyphs in render.py); look-alikes (O/0, I/1, S/5, G/6) are left out.
SIGN_DIGITS = "23456789"
# Glyphs that differ in several strokes, so a miniature encoder can tell them apart; no "A", which the lowercase
# tokenizer turns into the article "a".
SIGN_LETTERS = "EHKMRTXY"
SIGN_CHARS = SIGN_DIGITS + SIGN_LETTERS
SIGN_MAX_CHARS = 2

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
OPPOSITES = {"left": "right", "right": "left", "up": "down", "down": "up", "big": "small", "small": "big",
             "hot": "cold", "cold": "hot", "above": "below", "below": "above"}

# Junk tokens of the noisy alt-text corpus. None of these words occurs in any clean text of the world (a test
# checks it), so their rate in generated captions measures contamination by the noisy data.
NOISE_TOKENS = (
    "stock", "jpg", "hd", "wallpaper", "free", "download", "clipart", "vector", "royalty", "img", "dsc",
    "thumbnail", "watermark", "buy", "sale", "cheap", "deal", "lol", "pinterest", "copyright",
)

# The five format instructions used at evaluation (and, for text-only instructions, in training: that is how the
# instruction-tuned LM learns to obey them). Image-task training prompts never contain them.
FORMAT_INSTRUCTIONS = {
    "short_answer": "Give a short answer.",
    "yes_no": "Answer yes or no.",
    "one_word": "Answer with one word.",
    "caption": "Describe in detail.",
}
MME_SUFFIX = "Please answer yes or no."  # MME's own prompt suffix


def article(word: str) -> str:
    """'a' or 'an' for the word that follows."""
    return "an" if word[0] in "aeiou" else "a"


def plural(shape: str) -> str:
    """The plural of a shape name."""
    return shape + ("es" if shape.endswith("s") else "s")
