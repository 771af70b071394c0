"""Scene specs and everything said about them: sampling scenes and videos, captions, and questions per category.

A scene is a plain JSON-able dict (place, objects with shape / colour / size / position / action, an optional
sign), rendered by render.py. Question generators are pure: `(rng, scene) -> (question, answer)` or None when the
scene cannot support the question; yes/no questions pick a target answer first, so yes and no are balanced and a
model that ignores the image scores near chance. Objects in one scene have distinct colours, so "the red circle"
always names exactly one object. Every random choice comes from the `random.Random` passed in.
"""

from __future__ import annotations

import random

from harness.data.vocab import (
    ACTIONS,
    COLOURS,
    CORNERS,
    DIRECTION_PHRASE,
    DIRECTIONS,
    PLACE_PHRASE,
    PLACES,
    SHAPES,
    SIGN_CHARS,
    SIGN_DIGITS,
    SIGN_MAX_CHARS,
    SIZES,
    article,
    plural,
)

GRID = 4  # still images place objects on a 4x4 grid of cells, so relations are unambiguous
IMAGE_CATEGORIES = ("OCR", "Count", "Reason", "Place", "Color", "Spatial", "Action", "Others")
VIDEO_CATEGORIES = ("Action", "Others")


def sample_scene(rng: random.Random, sign: bool | None = None, actor: bool | None = None,
                 min_objects: int = 1, max_objects: int = 5) -> dict:
    """A random still scene; `sign` / `actor` force (True) or forbid (False) a sign / an acting object."""
    place = rng.choice(list(PLACES))
    n = rng.randint(min_objects, max_objects)
    cells = [(c, r) for r in range(GRID) for c in range(GRID)]
    sign = rng.random() < 0.5 if sign is None else sign
    sign_spec = None
    if sign:  # a sign takes two neighbouring cells of one row
        c, r = rng.randrange(GRID - 1), rng.randrange(GRID)
        cells = [cell for cell in cells if cell not in ((c, r), (c + 1, r))]
        length = rng.randint(1, SIGN_MAX_CHARS)
        alphabet = SIGN_DIGITS if rng.random() < 0.3 else SIGN_CHARS
        sign_spec = {"text": "".join(rng.choice(alphabet) for _ in range(length)),
                     "x": (c + 1) / GRID, "y": (r + 0.5) / GRID}
    colours = rng.sample(list(COLOURS), n)
    objects = []
    for colour, (c, r) in zip(colours, rng.sample(cells, n), strict=True):
        objects.append({
            "shape": rng.choice(SHAPES), "colour": colour, "size": rng.choice(SIZES), "col": c, "row": r,
            "x": round((c + 0.5) / GRID + rng.uniform(-0.02, 0.02), 4),
            "y": round((r + 0.5) / GRID + rng.uniform(-0.02, 0.02), 4),
            "action": "resting",
        })
    actor = rng.random() < 0.4 if actor is None else actor
    if actor:  # only actions whose cue fits inside the image
        o = rng.choice(objects)
        fits = [a for a in ACTIONS if not (a == "falling" and o["row"] == 0) and not (a == "rolling" and o["col"] == 0)
                and not (a == "jumping" and o["row"] == GRID - 1)]
        o["action"] = rng.choice(fits)
    return {"place": place, "objects": objects, "sign": sign_spec, "bg_seed": rng.randrange(2**31)}


def name(obj: dict) -> str:
    """The unique reference of an object: 'red circle'."""
    return f"{obj['colour']} {obj['shape']}"


def where(obj: dict) -> str:
    """Coarse position words: 'top left', 'bottom right'."""
    return f"{'top' if obj['row'] < GRID / 2 else 'bottom'} {'left' if obj['col'] < GRID / 2 else 'right'}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def short_caption(scene: dict) -> str:
    """'a red circle, a blue star and a sign on a beach.'"""
    parts = [f"{article(o['colour'])} {name(o)}" for o in scene["objects"]]
    if scene.get("sign"):
        parts.append("a sign")
    return f"{_join(parts)} {PLACE_PHRASE[scene['place']]}."


def detailed_caption(scene: dict) -> str:
    """Every object with size and position, the sign's text, the action, and the place."""
    n = len(scene["objects"])
    sents = [f"{article(scene['place'])} {scene['place']} scene with {n} object{'s' if n > 1 else ''}."]
    for o in scene["objects"]:
        sents.append(f"{article(o['size'])} {o['size']} {name(o)} is at the {where(o)}.")
    for o in scene["objects"]:
        if o["action"] != "resting":
            sents.append(f"the {name(o)} is {o['action']}.")
    if scene.get("sign"):
        sents.append(f"a sign says {scene['sign']['text']}.")
    return " ".join(s[0].upper() + s[1:] for s in sents)


# ---- dense targets: what a location-aware pretraining objective reads off a scene ------------------------------



# Targets whose 0 means "no object / no character here": a loss on them skips those slots (presence has its own).
EMPTY_IS_UNKNOWN = frozenset({"cell_shape", "cell_colour", "cell_size", "cell_action", "cell_char", "sign_text"})


def scene_targets(scene: dict) -> dict[str, list[int]]:
    """Class ids per grid cell (row-major, GRID x GRID) and per scene, 0 meaning "none":

    `cell_object` and `cell_sign` mark the cells holding an object / the sign; `cell_shape`, `cell_colour`,
    `cell_size`, `cell_action` (1 = resting) describe the object in a cell; `cell_char` is the sign character in
    a sign cell (a two-character sign has one in each of its two cells, a one-character sign straddles both);
    `place` is the scene type and `sign_text` the sign's characters by position. These are the zoo ViTs'
    auxiliary targets (location-aware pretraining, as LocCa / SigLIP 2 add to CLIP); `EMPTY_IS_UNKNOWN` lists
    those where 0 is "nothing to say".
    """
    cells = {k: [0] * GRID * GRID
             for k in ("cell_object", "cell_shape", "cell_colour", "cell_size", "cell_action", "cell_sign",
                       "cell_char")}
    for o in scene["objects"]:
        i = o["row"] * GRID + o["col"]
        cells["cell_object"][i] = 1
        cells["cell_shape"][i] = 1 + SHAPES.index(o["shape"])
        cells["cell_colour"][i] = 1 + list(COLOURS).index(o["colour"])
        cells["cell_size"][i] = 1 + SIZES.index(o["size"])
        cells["cell_action"][i] = 1 + (0 if o["action"] == "resting" else 1 + ACTIONS.index(o["action"]))
    text = ""
    if scene.get("sign"):
        sign = scene["sign"]
        row, col = int(sign["y"] * GRID), round(sign["x"] * GRID) - 1  # the sign spans cells col and col + 1
        text = sign["text"]
        for k, c in enumerate((col, col + 1)):
            cells["cell_sign"][row * GRID + c] = 1
            cells["cell_char"][row * GRID + c] = 1 + SIGN_CHARS.index(text[min(k, len(text) - 1)])
    sign_text = [1 + SIGN_CHARS.index(ch) for ch in text] + [0] * (SIGN_MAX_CHARS - len(text))
    return {**cells, "place": [1 + list(PLACES).index(scene["place"])], "sign_text": sign_text}


# ---- still-image questions, one generator per Open-VQA category ------------------------------------------------


def q_ocr(rng, scene):
    if not scene.get("sign"):
        return None
    text = scene["sign"]["text"]
    if text.isdigit() and rng.random() < 0.5:
        return "What number is on the sign?", text
    return rng.choice(["What is written on the sign?", "What does the sign say?"]), text


def q_count(rng, scene):
    objs = scene["objects"]
    if rng.random() < 0.5:
        return rng.choice(["How many objects are there?", "How many shapes are in the picture?"]), str(len(objs))
    shape = rng.choice([o["shape"] for o in objs])
    return f"How many {plural(shape)} are there?", str(sum(o["shape"] == shape for o in objs))


def q_color(rng, scene):
    shapes = [o["shape"] for o in scene["objects"]]
    unique = [o for o in scene["objects"] if shapes.count(o["shape"]) == 1]
    if not unique:
        return None
    o = rng.choice(unique)
    return rng.choice([f"What colour is the {o['shape']}?", f"Which colour does the {o['shape']} have?"]), o["colour"]


def q_place(rng, scene):
    return rng.choice(["What kind of place is this?", "Where are these objects?"]), scene["place"]


def _pair(rng, scene, axis):
    """Two objects that differ along `axis` ('col' or 'row'), or None."""
    pairs = [(a, b) for a in scene["objects"] for b in scene["objects"] if a[axis] != b[axis]]
    return rng.choice(pairs) if pairs else None


def q_spatial(rng, scene):
    axis = rng.choice(["col", "row"])
    pair = _pair(rng, scene, axis)
    if pair is None:
        return None
    a, b = pair
    lo, hi = ("left", "right") if axis == "col" else ("above", "below")
    truth = lo if a[axis] < b[axis] else hi
    if rng.random() < 0.5:  # open form
        if axis == "col":
            return f"Is the {name(a)} on the left or the right of the {name(b)}?", truth
        return f"Is the {name(a)} above or below the {name(b)}?", truth
    asked = rng.choice([lo, hi])
    rel = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}[asked]
    return f"Is the {name(a)} {rel} the {name(b)}?", "yes" if asked == truth else "no"


def q_action(rng, scene):
    actors = [o for o in scene["objects"] if o["action"] != "resting"]
    if not actors:
        return None
    o = rng.choice(actors)
    return rng.choice([f"What is the {name(o)} doing?", f"What action is the {name(o)} doing?"]), o["action"]


def q_reason(rng, scene):
    objs, place = scene["objects"], scene["place"]
    kind = rng.choice(["feel", "indoors", "bigger", "removed", "more"])
    if kind == "feel":
        asked = PLACES[place]["feel"] if rng.random() < 0.5 else rng.choice(["cold", "hot", "warm"])
        return f"Is it {asked} in this place?", "yes" if asked == PLACES[place]["feel"] else "no"
    if kind == "indoors":
        return "Is this scene indoors?", "yes" if PLACES[place]["indoors"] else "no"
    if kind == "bigger":
        pairs = [(a, b) for a in objs for b in objs if a["size"] == "big" and b["size"] == "small"]
        if not pairs:
            return None
        a, b = rng.choice(pairs)
        first, second = (a, b) if rng.random() < 0.5 else (b, a)
        return f"Which is bigger, the {name(first)} or the {name(second)}?", name(a)
    if kind == "removed":
        o = rng.choice(objs)
        return f"If the {name(o)} were taken away, how many objects would be left?", str(len(objs) - 1)
    shapes = sorted({o["shape"] for o in objs})
    if len(shapes) < 2:
        return None
    s, t = rng.sample(shapes, 2)
    more = sum(o["shape"] == s for o in objs) > sum(o["shape"] == t for o in objs)
    return f"Are there more {plural(s)} than {plural(t)}?", "yes" if more else "no"


def q_others(rng, scene):
    objs = scene["objects"]
    kind = rng.choice(["shape", "size", "exists", "sign"])
    o = rng.choice(objs)
    if kind == "shape":
        return rng.choice([f"What shape is the {o['colour']} object?", f"Which shape is {o['colour']}?"]), o["shape"]
    if kind == "size":
        return f"Is the {name(o)} big or small?", o["size"]
    if kind == "exists":
        present = {x["shape"] for x in objs}
        absent = [s for s in SHAPES if s not in present]
        if absent and rng.random() < 0.5:
            return f"Is there {article(s := rng.choice(absent))} {s} in the picture?", "no"
        return f"Is there {article(o['shape'])} {o['shape']} in the picture?", "yes"
    return "Is there a sign in the picture?", "yes" if scene.get("sign") else "no"


IMAGE_QUESTIONS = {
    "OCR": q_ocr, "Count": q_count, "Reason": q_reason, "Place": q_place, "Color": q_color,
    "Spatial": q_spatial, "Action": q_action, "Others": q_others,
}
# What a scene must have for a category's question to exist (resampling until one does is then fast).
NEEDS = {"OCR": {"sign": True}, "Action": {"actor": True}, "Spatial": {"min_objects": 2}, "Color": {"max_objects": 3}}


def image_item(rng: random.Random, category: str, **scene_kw) -> tuple[dict, str, str]:
    """A scene and one (question, answer) of the category."""
    while True:
        scene = sample_scene(rng, **{**NEEDS.get(category, {}), **scene_kw})
        qa = IMAGE_QUESTIONS[category](rng, scene)
        if qa:
            return scene, *qa


def scene_questions(rng: random.Random, scene: dict, k: int) -> list[tuple[str, str, str]]:
    """Up to k distinct (category, question, answer) about one scene (dialogues)."""
    out, seen = [], set()
    for category in rng.sample(IMAGE_CATEGORIES, len(IMAGE_CATEGORIES)):
        qa = IMAGE_QUESTIONS[category](rng, scene)
        if qa and qa[0] not in seen:
            out.append((category, *qa))
            seen.add(qa[0])
        if len(out) == k:
            break
    return out


# ---- MME-style yes/no pairs: one image, a question whose answer is yes and one whose answer is no ---------------

MME_SUBTASKS = ("existence", "count", "position", "color", "OCR", "scene")


def mme_pair(rng: random.Random, subtask: str) -> tuple[dict, str, str]:
    """A scene plus its (yes-question, no-question)."""
    from harness.data.vocab import NUMBER_WORDS

    while True:
        scene = sample_scene(rng, sign=True if subtask == "OCR" else None,
                             min_objects=2 if subtask == "position" else 1, max_objects=4)
        objs = scene["objects"]
        o = rng.choice(objs)
        if subtask == "existence":
            absent = [s for s in SHAPES if s not in {x["shape"] for x in objs}]
            return scene, f"Is there {article(o['shape'])} {o['shape']} in this image?", \
                f"Is there {article(s := rng.choice(absent))} {s} in this image?"
        if subtask == "count":
            n = len(objs)
            wrong = rng.choice([m for m in (n - 1, n + 1) if m >= 1])
            return scene, f"Are there {NUMBER_WORDS[n]} objects in this image?", \
                f"Are there {NUMBER_WORDS[wrong]} objects in this image?"
        if subtask == "position":
            pair = _pair(rng, scene, "col")
            if pair is None:
                continue
            a, b = pair
            true, false = ("left", "right") if a["col"] < b["col"] else ("right", "left")
            return scene, f"Is the {name(a)} to the {true} of the {name(b)}?", \
                f"Is the {name(a)} to the {false} of the {name(b)}?"
        if subtask == "color":
            absent = [c for c in COLOURS if c not in {x["colour"] for x in objs}]
            return scene, f"Is there a {o['colour']} object in this image?", \
                f"Is there a {rng.choice(absent)} object in this image?"
        if subtask == "OCR":
            text = scene["sign"]["text"]
            other = text
            while other == text:
                other = "".join(rng.choice(SIGN_CHARS) for _ in range(len(text)))
            return scene, f"Does the sign say {text}?", f"Does the sign say {other}?"
        other = rng.choice([p for p in PLACES if p != scene["place"]])
        return scene, f"Is this scene {PLACE_PHRASE[scene['place']]}?", f"Is this scene {PLACE_PHRASE[other]}?"


# ---- videos ----------------------------------------------------------------------------------------------------


def sample_video(rng: random.Random, num_frames: int) -> dict:
    """1-3 objects, at least one moving (left/right/up/down) or appearing/disappearing; tracks are per frame."""
    n = rng.randint(1, 3)
    colours = rng.sample(list(COLOURS), n)
    lanes = rng.sample(range(3), n)  # each object its own lane, so paths do not cross
    objects = []
    for i, (colour, lane) in enumerate(zip(colours, lanes, strict=True)):
        motion = rng.choice(DIRECTIONS + ("appears", "disappears")) if i == 0 else \
            rng.choice(DIRECTIONS + ("still", "still", "appears", "disappears"))
        objects.append({"shape": rng.choice(SHAPES), "colour": colour, "size": "big", "motion": motion,
                        "lane": lane})
    video = {"place": rng.choice(list(PLACES)), "objects": objects, "bg_seed": rng.randrange(2**31)}
    set_tracks(rng, video, num_frames)
    return video


def set_tracks(rng: random.Random, video: dict, num_frames: int) -> None:
    """(x, y, visible) per frame for each object, from its motion and lane."""
    for o in video["objects"]:
        lane = 0.2 + 0.3 * o["lane"]  # lanes at 0.2 / 0.5 / 0.8 across the motion
        start, dist = rng.uniform(0.15, 0.3), rng.uniform(0.45, 0.55)
        switch = rng.randint(1, max(1, num_frames - 1))
        rest = (round(rng.uniform(0.2, 0.8), 4), lane)  # where a non-moving object stands
        track = []
        for t in range(num_frames):
            f = t / max(1, num_frames - 1)
            x, y, visible = *rest, True
            if o["motion"] in DIRECTIONS:
                along = start + dist * f if o["motion"] in ("right", "down") else 1 - start - dist * f
                x, y = (along, lane) if o["motion"] in ("left", "right") else (lane, along)
            elif o["motion"] == "appears":
                visible = t >= switch
            elif o["motion"] == "disappears":
                visible = t < switch
            track.append([round(x, 4), round(y, 4), visible])
        o["track"] = track


def video_caption(video: dict) -> str:
    """'a red circle moves to the left and a blue star stays still in a forest.'"""
    verbs = {**{d: f"moves {DIRECTION_PHRASE[d]}" for d in DIRECTIONS}, "still": "stays still",
             "appears": "appears", "disappears": "disappears"}
    parts = [f"{article(o['colour'])} {name(o)} {verbs[o['motion']]}" for o in video["objects"]]
    return f"{_join(parts)} {PLACE_PHRASE[video['place']]}."


def video_question(rng: random.Random, video: dict, category: str) -> tuple[str, str] | None:
    """A motion question: 'Action' = yes/no with a balanced target, 'Others' = open."""
    objs = video["objects"]
    o = rng.choice(objs)
    if category == "Action":
        target = rng.random() < 0.5
        kind = rng.choice(["dir", "dir", "moving", "appear"])
        if kind == "dir":
            if target and o["motion"] in DIRECTIONS:
                d = o["motion"]
            else:
                target, d = False, rng.choice([d for d in DIRECTIONS if d != o["motion"]])
            return f"Is the {name(o)} moving {DIRECTION_PHRASE[d]}?", "yes" if target else "no"
        if kind == "moving":
            return f"Is the {name(o)} moving?", "yes" if o["motion"] in DIRECTIONS else "no"
        verb = rng.choice(["appear", "disappear"])
        return f"Does the {name(o)} {verb}?", "yes" if o["motion"] == verb + "s" else "no"
    kind = rng.choice(["direction", "appears", "count", "shape"])
    movers = [x for x in objs if x["motion"] in DIRECTIONS]
    if kind == "direction" and movers:
        m = rng.choice(movers)
        return f"Which direction is the {name(m)} moving?", m["motion"]
    if kind == "appears":
        for verb in rng.sample(["appears", "disappears"], 2):
            those = [x for x in objs if x["motion"] == verb]
            if len(those) == 1:
                return f"What colour is the object that {verb}?", those[0]["colour"]
        return None
    if kind == "count":
        return "How many objects are moving?", str(len(movers))
    dirs = [m["motion"] for m in movers]
    unique = [m for m in movers if dirs.count(m["motion"]) == 1]
    if not unique:
        return None
    m = rng.choice(unique)
    return f"What shape is moving {DIRECTION_PHRASE[m['motion']]}?", m["shape"]


def video_item(rng: random.Random, category: str, num_frames: int) -> tuple[dict, str, str]:
    """A video and one (question, answer) of the category."""
    while True:
        video = sample_video(rng, num_frames)
        qa = video_question(rng, video, category)
        if qa:
            return video, *qa


def corners_fact(shape: str) -> str:
    """'A triangle has 3 corners.' (used by text documents)."""
    n = CORNERS[shape]
    return f"{article(shape).capitalize()} {shape} has {'no' if n == 0 else n} corners."
