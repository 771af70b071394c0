"""The chat format shared by training and evaluation (Vicuna style, as in Lynx).

A training example is `<s> USER: {question} ASSISTANT: {answer} </s>` (dialogues repeat the USER / ASSISTANT
turns); only the answers and their `</s>` are supervised. Evaluation feeds `<s> USER: {question} ASSISTANT:`
and lets the model generate the rest.
"""

from __future__ import annotations

IGNORE_INDEX = -100  # label value that the loss ignores (transformers / torch cross-entropy convention)


def prompt_text(question: str) -> str:
    """The prompt the model sees before answering."""
    return f"USER: {question} ASSISTANT:"


def answer_text(answer: str) -> str:
    """The supervised continuation (the eos token is appended by `encode_example`)."""
    return f" {answer}"


def encode_prompt(tokenizer, question: str) -> list[int]:
    """Token ids of bos + prompt: what generation starts from."""
    return [tokenizer.bos_token_id, *tokenizer.encode(prompt_text(question), add_special_tokens=False)]


def encode_example(tokenizer, question: str, answer: str, max_len: int) -> dict[str, list[int]]:
    """Token ids and labels of one training example, cut to `max_len`.

    `labels` is aligned with `input_ids` (the model shifts them, as transformers causal LMs do); bos and the
    prompt are `IGNORE_INDEX`, the answer tokens and eos are kept.
    """
    prompt = encode_prompt(tokenizer, question)
    answer_ids = [*tokenizer.encode(answer_text(answer), add_special_tokens=False), tokenizer.eos_token_id]
    input_ids = prompt + answer_ids
    labels = [IGNORE_INDEX] * len(prompt) + answer_ids
    return {"input_ids": input_ids[:max_len], "labels": labels[:max_len]}


def encode_dialogue(tokenizer, turns: list[tuple[str, str]], max_len: int) -> dict[str, list[int]]:
    """A multi-turn chat `<s> USER: q1 ASSISTANT: a1</s> USER: q2 ASSISTANT: a2</s>`, cut to `max_len`.

    Every assistant answer and its eos are supervised (labels); bos and every user turn are `IGNORE_INDEX`.
    """
    input_ids, labels = [tokenizer.bos_token_id], [IGNORE_INDEX]
    for question, answer in turns:
        prompt = tokenizer.encode(prompt_text(question), add_special_tokens=False)
        answer_ids = [*tokenizer.encode(answer_text(answer), add_special_tokens=False), tokenizer.eos_token_id]
        input_ids += prompt + answer_ids
        labels += [IGNORE_INDEX] * len(prompt) + answer_ids
    return {"input_ids": input_ids[:max_len], "labels": labels[:max_len]}


def encode_text(tokenizer, text: str, max_len: int) -> dict[str, list[int]]:
    """A plain document for language modelling: bos + text + eos, every token but bos supervised."""
    ids = [tokenizer.bos_token_id, *tokenizer.encode(text, add_special_tokens=False), tokenizer.eos_token_id]
    return {"input_ids": ids[:max_len], "labels": [IGNORE_INDEX, *ids[1:]][:max_len]}
