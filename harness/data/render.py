"""Renders scene specs (plain dicts, see scenes.py) into RGB images: a place background, outlined shapes with
action cues, and signs with 1-3 characters in a 5x7 bitmap font.

Geometry is fractional (0..1), so one spec renders at any size. Backgrounds and shapes are drawn on a 4x
supersampled canvas and box-downsampled (anti-aliased edges); sign glyphs are drawn last at the final resolution,
one pixel per glyph cell, so a glyph is 5 x 7 px at the render size (the high resolution: legible) and 2.5 x 3.5 px
after the 2x downsampling to the low resolution (a blur): the OCR mechanism behind the high-resolution ablation.
The font is our own bitmap table, not a system font, so the pixels do not depend on the machine.
"""

from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageDraw

from harness.data.vocab import COLOURS

SUPERSAMPLE = 4
OUTLINE = (35, 35, 35)
CUE = (30, 30, 30)  # action cues: speed lines, shadow, arcs
RADIUS = {"small": 0.065, "big": 0.11}  # object radius as a fraction of the image side

# 5x7 glyphs, one string of 7 rows x 5 columns per character ('#' = ink).
GLYPHS = {
    "2": ".###.#...#....#...#...#...#...#####",
    "3": "#####...#...#.....#.....##...#.###.",
    "4": "...#...##..#.#.#..#.#####...#....#.",
    "5": "######....####.....#....##...#.###.",
    "6": "..##..#...#....####.#...##...#.###.",
    "7": "#####....#...#...#...#....#....#...",
    "8": ".###.#...##...#.###.#...##...#.###.",
    "9": ".###.#...##...#.####....#...#..##..",
    "A": ".###.#...##...#######...##...##...#",
    "B": "####.#...##...#####.#...##...#####.",
    "C": ".###.#...##....#....#....#...#.###.",
    "D": "###..#..#.#...##...##...##..#.###..",
    "E": "######....#....####.#....#....#####",
    "F": "######....#....####.#....#....#....",
    "H": "#...##...##...#######...##...##...#",
    "K": "#...##..#.#.#..##...#.#..#..#.#...#",
    "L": "#....#....#....#....#....#....#####",
    "M": "#...###.###.#.##.#.##...##...##...#",
    "N": "#...##...###..##.#.##..###...##...#",
    "P": "####.#...##...#####.#....#....#....",
    "R": "####.#...##...#####.#.#..#..#.#...#",
    "T": "#####..#....#....#....#....#....#..",
    "U": "#...##...##...##...##...##...#.###.",
    "X": "#...##...#.#.#...#...#.#.#...##...#",
    "Y": "#...##...#.#.#...#....#....#....#..",
    "Z": "#####....#...#...#...#...#....#####",
}

BACKGROUND = {  # base colours per place; each scene jitters them a little
    "beach": {"sky": (135, 200, 235), "sea": (40, 120, 200), "ground": (235, 215, 150)},
    "forest": {"sky": (150, 200, 235), "ground": (60, 125, 60), "tree": (20, 80, 35)},
    "city": {"sky": (175, 180, 190), "ground": (95, 95, 100), "building": (120, 120, 130)},
    "snow": {"sky": (195, 200, 210), "ground": (245, 247, 252), "flake": (190, 205, 230)},
    "desert": {"sky": (245, 170, 90), "ground": (220, 175, 100), "dune": (195, 145, 75)},
    "kitchen": {"sky": (235, 225, 200), "ground": (140, 95, 60), "tile": (200, 190, 165)},
}


def background(place: str, seed: int, size: int) -> Image.Image:
    """The place's backdrop on the supersampled canvas (side size * SUPERSAMPLE); `seed` varies its details."""
    rng = random.Random(seed)
    big = size * SUPERSAMPLE
    pal = {k: tuple(min(255, max(0, c + rng.randint(-10, 10))) for c in v) for k, v in BACKGROUND[place].items()}
    img = Image.new("RGB", (big, big), pal["sky"])
    d = ImageDraw.Draw(img)

    def box(x0, y0, x1, y1, colour):
        d.rectangle((x0 * big, y0 * big, x1 * big, y1 * big), fill=colour)

    if place == "beach":
        box(0, 0.35, 1, 0.5, pal["sea"])
        box(0, 0.5, 1, 1, pal["ground"])
    elif place == "forest":
        box(0, 0.3, 1, 1, pal["ground"])
        for _ in range(6):
            x, h = rng.uniform(0, 1), rng.uniform(0.15, 0.25)
            d.polygon([(x * big, (0.33 - h) * big), ((x - 0.07) * big, 0.33 * big), ((x + 0.07) * big, 0.33 * big)],
                      fill=pal["tree"])
    elif place == "city":
        box(0, 0.5, 1, 1, pal["ground"])
        x = 0.0
        while x < 1:
            w, top = rng.uniform(0.12, 0.22), rng.uniform(0.12, 0.3)
            shade = tuple(c + rng.randint(-20, 20) for c in pal["building"])
            box(x, top, x + w - 0.02, 0.5, shade)
            x += w
    elif place == "snow":
        box(0, 0.35, 1, 1, pal["ground"])
        for _ in range(14):
            x, y, r = rng.uniform(0, 1), rng.uniform(0, 1), 0.012
            d.ellipse(((x - r) * big, (y - r) * big, (x + r) * big, (y + r) * big), fill=pal["flake"])
    elif place == "desert":
        box(0, 0.35, 1, 1, pal["ground"])
        for _ in range(3):
            x, w = rng.uniform(0, 1), rng.uniform(0.2, 0.35)
            d.ellipse(((x - w) * big, 0.28 * big, (x + w) * big, 0.5 * big), fill=pal["dune"])
        box(0, 0.42, 1, 1, pal["ground"])
    elif place == "kitchen":
        for i in range(1, 8):
            d.line((i / 8 * big, 0, i / 8 * big, 0.55 * big), fill=pal["tile"], width=SUPERSAMPLE)
            d.line((0, i / 8 * big * 0.55, big, i / 8 * big * 0.55), fill=pal["tile"], width=SUPERSAMPLE)
        box(0, 0.55, 1, 1, pal["ground"])
    return img


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Polygon vertices of a shape centred at (cx, cy) with radius r (canvas pixels); circles are not polygons."""
    if shape == "square":
        h = r * 0.85
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r * 0.95, cy + r * 0.75), (cx - r * 0.95, cy + r * 0.75)]
    if shape == "star":
        return [(cx + (r if i % 2 == 0 else r * 0.45) * math.sin(i * math.pi / 5),
                 cy - (r if i % 2 == 0 else r * 0.45) * math.cos(i * math.pi / 5)) for i in range(10)]
    if shape == "cross":
        a, t = r * 0.9, r * 0.33
        return [(cx - t, cy - a), (cx + t, cy - a), (cx + t, cy - t), (cx + a, cy - t), (cx + a, cy + t),
                (cx + t, cy + t), (cx + t, cy + a), (cx - t, cy + a), (cx - t, cy + t), (cx - a, cy + t),
                (cx - a, cy - t), (cx - t, cy - t)]
    raise ValueError(f"unknown shape {shape}")


def _draw_object(d: ImageDraw.ImageDraw, obj: dict, big: int) -> None:
    """One outlined shape plus its action cue."""
    cx, cy, r = obj["x"] * big, obj["y"] * big, RADIUS[obj["size"]] * big
    line = max(1, big // 64)  # one final pixel
    fill = COLOURS[obj["colour"]]
    if obj["shape"] == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=OUTLINE, width=line)
    else:
        d.polygon(_shape_points(obj["shape"], cx, cy, r), fill=fill, outline=OUTLINE, width=line)
    # Cues are bold (two final pixels) and hug the object, so they stay inside its grid cell and survive the
    # downsampling to the low resolution: an encoder reads an object's action where it reads the object.
    action, gap, reach, cue = obj.get("action", "resting"), 0.008 * big, 0.04 * big, 2 * line
    if action == "falling":  # speed lines above
        for dx in (-0.5, 0, 0.5):
            d.line((cx + dx * r, cy - r - gap - reach, cx + dx * r, cy - r - gap), fill=CUE, width=cue)
    elif action == "rolling":  # speed lines behind (to the left)
        for dy in (-0.5, 0, 0.5):
            d.line((cx - r - gap - reach, cy + dy * r, cx - r - gap, cy + dy * r), fill=CUE, width=cue)
    elif action == "jumping":  # a shadow on the ground below the object
        sy = cy + r + 0.03 * big
        d.ellipse((cx - r, sy - 0.012 * big, cx + r, sy + 0.012 * big), fill=CUE)
    elif action == "spinning":  # two arcs around the object
        rr = r * 1.3
        d.arc((cx - rr, cy - rr, cx + rr, cy + rr), 200, 320, fill=CUE, width=cue)
        d.arc((cx - rr, cy - rr, cx + rr, cy + rr), 20, 140, fill=CUE, width=cue)


def _draw_sign(pixels: np.ndarray, sign: dict) -> None:
    """A white board with dark glyphs, drawn in place at the final resolution."""
    size = pixels.shape[0]
    unit = 1  # one pixel per font cell at the render (= high) resolution: any 2x downsampling blurs the text
    text = sign["text"]
    w, h = (len(text) * 6 - 1 + 4) * unit, (7 + 4) * unit
    x0, y0 = int(round(sign["x"] * size - w / 2)), int(round(sign["y"] * size - h / 2))
    pixels[y0 + h: y0 + h + 3 * unit, x0 + w // 2 - unit: x0 + w // 2 + unit] = (110, 75, 40)  # post
    pixels[y0:y0 + h, x0:x0 + w] = OUTLINE
    pixels[y0 + unit:y0 + h - unit, x0 + unit:x0 + w - unit] = (250, 250, 245)
    for i, ch in enumerate(text):
        ink = np.array([c == "#" for c in GLYPHS[ch]]).reshape(7, 5)
        ink = np.kron(ink, np.ones((unit, unit), dtype=bool))
        gx, gy = x0 + (2 + 6 * i) * unit, y0 + 2 * unit
        pixels[gy:gy + 7 * unit, gx:gx + 5 * unit][ink] = (15, 15, 15)


def render_scene(scene: dict, size: int, backdrop: Image.Image | None = None) -> np.ndarray:
    """An RGB uint8 image [size, size, 3] of a scene spec; `backdrop` reuses a rendered background (videos)."""
    canvas = (backdrop if backdrop is not None else background(scene["place"], scene["bg_seed"], size)).copy()
    d = ImageDraw.Draw(canvas)
    for obj in scene["objects"]:
        if obj.get("visible", True):
            _draw_object(d, obj, canvas.size[0])
    pixels = np.array(canvas.resize((size, size), Image.Resampling.BOX))
    if scene.get("sign"):
        _draw_sign(pixels, scene["sign"])
    return pixels


def render_video(video: dict, size: int) -> list[np.ndarray]:
    """The frames of a video spec: each object's per-frame position and visibility from its `track`."""
    backdrop = background(video["place"], video["bg_seed"], size)
    frames = []
    for t in range(len(video["objects"][0]["track"])):
        objects = [{**o, "x": o["track"][t][0], "y": o["track"][t][1], "visible": o["track"][t][2]}
                   for o in video["objects"]]
        frames.append(render_scene({"place": video["place"], "objects": objects}, size, backdrop))
    return frames
