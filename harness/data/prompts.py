"""Instruction phrasings per task: a few base prompts, a diversified pool, and held-out evaluation phrasings.

Samples store the raw question (or nothing, for captioning); the phrasing is chosen when a sample is READ, seeded
by run seed + sample key, so one world serves both the `fixed` (base prompts only) and the `diverse` (the whole
pool) variants. Evaluation wraps its questions in HELD_OUT phrasings, which no training pool contains, plus a
format instruction ("Answer yes or no.", ...); image-task pools never contain those instructions either, so
following them is a test of generalisation. Templates use `{question}` where the task has a question.
"""

from __future__ import annotations

import random

from harness.errors import AblateError, one_of

BASE = {
    "vqa": ("{question}", "Answer the question: {question}", "Look at the image. {question}"),
    "caption_short": ("Describe the image briefly.", "Write a short caption for the image."),
    "caption_detailed": ("Describe the image in detail.", "Give a detailed description of the picture."),
    "place": ("Where is this? Answer with a place name.", "What place is shown?"),
    "dialogue": ("{question}", "Let us talk about this picture. {question}"),
    "video_qa": ("{question}", "Watch the video. {question}"),
    "video_caption": ("Describe the video.", "What happens in the video?"),
    "text_instruction": ("{question}", "Please answer: {question}"),
}

_EXTRA = {
    "vqa": (
        "Please answer this question about the image: {question}", "{question} Reply briefly.",
        "I have a question about this picture. {question}", "Can you tell me this? {question}",
        "Here is an image. {question}", "Help me with the image. {question}", "{question} Keep it short.",
        "Examine the picture and answer. {question}", "Using the image, answer: {question}",
        "Quick question: {question}", "{question} Use a few words.", "Study the image, then answer: {question}",
        "{question} Be brief.", "Check the picture. {question}", "Answer from what you see: {question}",
    ),
    "caption_short": (
        "What is in the picture?", "Give a short caption.", "Caption this image.",
        "Summarize the picture in a sentence.", "What does this picture show?", "Briefly, what do you see?",
        "Write a one-line caption.", "Tell me what is in the image.", "Provide a brief caption.",
        "What is shown here?", "Sum up the scene.", "Give a caption for this picture.",
        "In a few words, describe the image.", "What do you see in the picture?", "Short caption, please.",
    ),
    "caption_detailed": (
        "Describe everything you see in the image.", "Write a long description of this picture.",
        "Tell me about all the objects in the image.", "Explain what is in the picture, including positions.",
        "Describe the scene thoroughly.", "What can you tell me about this image? Be thorough.",
        "List the objects and where they are.", "Provide a detailed caption.",
        "Describe the picture with all details.", "Give a full account of the image.",
        "Describe this scene, object by object.", "Write a detailed caption for the image.",
        "Describe the image, mentioning colours, sizes and places.", "Tell me everything about this picture.",
        "Give a complete description of what is shown.",
    ),
    "place": (
        "Which place is this?", "Where was this picture taken?", "Name the place in the image.",
        "What kind of place is this?", "Where are these objects?", "In which place is this scene?",
        "Tell me the location.", "What is the setting of this image?", "Identify the place.",
        "Where does this scene happen?", "Name the location shown.", "What location is this?",
        "Which setting is shown in the picture?", "Where could this be?", "Guess the place in the picture.",
    ),
    "dialogue": (
        "I want to ask about this image. {question}", "Here is a picture for you. {question}",
        "Look at this. {question}", "First question: {question}", "Let us start. {question}",
        "About the picture: {question}", "Can you help me with this picture? {question}",
        "Have a look at the image. {question}", "Tell me about the image. {question}",
        "I am curious about this picture. {question}", "Please look at this image. {question}",
        "Here is my picture. {question}", "Let us chat about the image. {question}",
        "Picture question: {question}", "Start with this: {question}",
    ),
    "video_qa": (
        "Here is a video. {question}", "Look at the frames. {question}", "About the clip: {question}",
        "{question} Answer from the video.", "Based on the video, {question}", "Check the clip. {question}",
        "Watch the frames and answer: {question}", "Video question: {question}", "{question} Reply briefly.",
        "Please answer about the video: {question}", "From these frames, {question}",
        "Examine the clip, then answer. {question}", "{question} Keep it short.",
        "Look at the motion. {question}", "Answer using the video: {question}",
    ),
    "video_caption": (
        "Describe the clip.", "What is going on in the frames?", "Summarize the video.",
        "Write a caption for the video.", "Tell me what moves in the video.", "What do you see in the clip?",
        "Describe the motion in the video.", "Caption this clip.", "What changes across the frames?",
        "Explain the video briefly.", "Give a short caption of the clip.", "What happens in these frames?",
        "Describe what the objects do.", "Sum up the clip.", "Tell me about the video.",
    ),
    "text_instruction": (
        "Answer this: {question}", "{question} Reply briefly.", "Question: {question}",
        "Can you tell me? {question}", "Quick question: {question}", "I wonder: {question}",
        "Help me out. {question}", "{question} Keep it short.", "Please reply: {question}",
        "Tell me: {question}", "Here is a question. {question}", "Solve this: {question}",
        "My question is: {question}", "{question} Be brief.", "Respond to this: {question}",
    ),
}
POOL = {task: BASE[task] + _EXTRA[task] for task in BASE}

# Evaluation-only phrasings: never in any training pool (a test checks it).
HELD_OUT = {
    "vqa": ("Please look carefully and tell me: {question}", "After viewing the image, respond. {question}",
            "Consider this picture. {question}"),
    "caption_short": ("Say in one sentence what this picture contains.",),
    "caption_detailed": ("What can you see here?",),
    "place": ("Name the kind of location you see in this picture.",),
    "video_qa": ("Having watched the clip, respond. {question}", "Consider these frames. {question}"),
    "video_caption": ("Say in one sentence what these frames contain.",),
}


def choose_prompt(task: str, mode: str, seed: int, key: str, question: str = "", turn: int = 0) -> str:
    """The training prompt of a sample: a base prompt (`fixed`) or one from the pool (`diverse`)."""
    if task not in BASE:
        raise AblateError(f"no prompts for task '{task}'; expected one of {one_of(BASE)}")
    templates = BASE[task] if mode == "fixed" else POOL[task]
    return random.Random(f"{seed}/{key}/{turn}").choice(templates).format(question=question)


def held_out_prompt(task: str, key: str, question: str = "", instruction: str = "") -> str:
    """An evaluation prompt: a held-out phrasing (seeded by key only, identical for every run) + instruction."""
    text = random.Random(f"eval/{key}").choice(HELD_OUT[task]).format(question=question)
    return f"{text} {instruction}".strip()
