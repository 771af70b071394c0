"""The benchmark the world writes: Open-VQA-style image and video splits with the paper's categories and counts,
MME-style yes/no pairs, and instruction-following probes.

Benchmark scenes come from their own seed stream ("bench/..."), apart from every training stream. Prompts are
held-out phrasings (prompts.HELD_OUT) plus, where the item asks for it, a format instruction; they are baked into
the items, so every run of every variant is asked exactly the same thing.
"""

from __future__ import annotations

import random

from harness.data.prompts import held_out_prompt
from harness.data.scenes import detailed_caption, image_item, mme_pair, video_item
from harness.data.vocab import FORMAT_INSTRUCTIONS, MME_SUFFIX

# The paper's Open-VQA sizes (Lynx, Table 3): 302 image and 148 video questions.
OPENVQA_IMAGE = {"OCR": 53, "Count": 37, "Reason": 31, "Place": 22, "Color": 30, "Spatial": 15, "Action": 20,
                 "Others": 94}
OPENVQA_VIDEO = {"Action": 108, "Others": 40}
MME_IMAGES = 20  # images per MME subtask at benchmark_scale 1 (each gives a yes and a no question)
PROBE_ITEMS = 25  # items per probe kind at benchmark_scale 1
PROBES = ("short_answer", "yes_no", "one_word", "caption")
# Which Open-VQA categories feed each probe (their answers suit the instruction).
PROBE_CATEGORIES = {"short_answer": ("Count", "Color", "Place", "OCR", "Others"),
                    "yes_no": ("Spatial", "Reason", "Others"), "one_word": ("Color", "Place", "Action")}


def category_plan(counts: dict[str, int], scale: int = 1) -> list[str]:
    """The category of each item, grouped in the paper's order."""
    return [c for c, n in counts.items() for _ in range(n * scale)]


def item_json(dataset: str, task: str, key: str, category: str, question: str, prompt: str, answer: str,
              pair_id: str = "", probe: str = "") -> dict:
    """The json of one benchmark sample (the fields the evaluation batch carries)."""
    return {"dataset": dataset, "task": task, "key": key, "category": category, "question": question,
            "prompt": prompt, "answer": answer, "pair_id": pair_id, "probe": probe}


def openvqa_image_item(seed: int, dataset: str, i: int, category: str, num_frames: int) -> tuple[dict, dict]:
    """(scene, json) of Open-VQA image item i."""
    rng = random.Random(f"{seed}/bench/{dataset}/{i}")
    scene, q, a = image_item(rng, category)
    key = f"{dataset}-{i:06d}"
    return scene, item_json(dataset, "vqa", key, category, q, held_out_prompt("vqa", key, q), a)


def openvqa_video_item(seed: int, dataset: str, i: int, category: str, num_frames: int) -> tuple[dict, dict]:
    """(video, json) of Open-VQA video item i."""
    rng = random.Random(f"{seed}/bench/{dataset}/{i}")
    video, q, a = video_item(rng, category, num_frames)
    key = f"{dataset}-{i:06d}"
    return video, item_json(dataset, "video_qa", key, category, q, held_out_prompt("video_qa", key, q), a)


VIDEO_10X = "openvqa_video_10x"


def openvqa_video_10x_items(world) -> list[tuple[dict, dict]]:
    """The items of the 10x video split: 1,480, drawn like the 148 of `openvqa_video` (its categories in its
    proportions, held-out phrasings) from their own seed stream. A split that brings its own items
    (`harness.evaluation.splits`), so a run's world gains it when the run is first scored on it, at any benchmark
    scale, without being rebuilt."""
    return [openvqa_video_item(world.seed, VIDEO_10X, i, c, world.num_frames)
            for i, c in enumerate(category_plan(OPENVQA_VIDEO, 10))]


def mme_items(seed: int, subtask: str, j: int) -> tuple[dict, list[dict]]:
    """(scene, [yes json, no json]) of MME image j of a subtask: both questions share `pair_id`."""
    rng = random.Random(f"{seed}/bench/mme/{subtask}/{j}")
    scene, q_yes, q_no = mme_pair(rng, subtask)
    pair = f"mme-{subtask}-{j:04d}"
    return scene, [item_json("mme", "vqa", f"{pair}-{ans}", subtask, q, f"{q} {MME_SUFFIX}", ans, pair_id=pair)
                   for q, ans in ((q_yes, "yes"), (q_no, "no"))]


def probe_item(seed: int, probe: str, j: int) -> tuple[dict, dict]:
    """(scene, json) of probe item j: a question whose answer suits the probe's format instruction."""
    rng = random.Random(f"{seed}/bench/probes/{probe}/{j}")
    key = f"probes-{probe}-{j:04d}"
    instruction = FORMAT_INSTRUCTIONS[probe]
    if probe == "caption":
        scene, _, _ = image_item(rng, "Others")
        prompt = held_out_prompt("caption_detailed", key, instruction=instruction)
        return scene, item_json("probes", "caption_detailed", key, probe, prompt, prompt, detailed_caption(scene),
                                probe=probe)
    while True:
        scene, q, a = image_item(rng, rng.choice(PROBE_CATEGORIES[probe]))
        is_yes_no = a in ("yes", "no")
        if (probe == "yes_no") == is_yes_no and (probe != "one_word" or " " not in a):
            break
    return scene, item_json("probes", "vqa", key, probe, q, held_out_prompt("vqa", key, q, instruction), a,
                            probe=probe)
