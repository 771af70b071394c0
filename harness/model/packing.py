"""Sequence packing for training: the LLM reads only real positions, several samples to a row.

A training batch is right-padded to its longest sample, and a text-only sample still carries the prefix's masked
visual positions: at `small` about 40 % of a finetuning batch's positions are padding. `Packing` lays the real
positions of each sample end to end in as few rows as hold them (first-fit decreasing, rows as long as the padded
batch), and a block-diagonal causal mask keeps every sample attending to its own earlier tokens only. Position ids
are the sample's own, so every real position computes what it computes padded, up to the order of floating-point
sums; `unpack` puts the hidden states back where they were, for the loss and for anything that needs the padded
layout (cross-attention blocks, which see each sample's own visual tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.model.llm import PLAIN_HEAD


def packs(llm: nn.Module) -> bool:
    """Whether `llm` can train packed: an output head that is one product (the loss is taken on the unpacked hidden
    states, `harness.model.llm.head_loss`) and SDPA attention, which reads the boolean block-diagonal mask as a mask
    (eager attention would add it to the scores as 0 / 1 and let the samples see each other). Other LLMs train on
    the padded batch."""
    return llm.config.model_type in PLAIN_HEAD and getattr(llm.config, "_attn_implementation", None) == "sdpa"


def first_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Sample indices per row: longest first, each into the first row with room (ties keep batch order)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return [sorted(row) for row in rows]


@dataclass(frozen=True)
class Packing:
    """Where each real position of a padded batch [B, L] sits in the packed rows [R, L]."""

    target: torch.Tensor  # [N] flat index into the packed [R * L] slots of each real position, in padded order
    real: torch.Tensor  # [N] flat index of each real position in the padded [B * L]
    segment: torch.Tensor  # [R, L] the sample each slot holds; -1 for padding
    shape: tuple[int, int]  # the padded batch's (B, L)

    @classmethod
    def of(cls, mask: torch.Tensor) -> Packing:
        """The packing of a padded batch's real positions (`mask` [B, L], True = real)."""
        B, L = mask.shape
        device, mask = mask.device, mask.cpu()  # built on the host (one copy from an accelerator), then moved
        lengths = mask.sum(1).tolist()
        rows = first_fit_decreasing(lengths, L)
        positions = mask.flatten().nonzero().squeeze(1).split(lengths)  # each sample's, in order
        source = torch.full((len(rows), L), B * L, dtype=torch.long)  # each slot's padded position; B * L: padding
        segment = torch.full((len(rows), L), -1, dtype=torch.long)
        for r, row in enumerate(rows):
            at = 0
            for b in row:
                n = lengths[b]
                source[r, at:at + n] = positions[b]
                segment[r, at:at + n] = b
                at += n
        slots = source.flatten()
        filled = (slots < B * L).nonzero().squeeze(1)
        real = slots[filled]
        order = real.argsort()
        return cls(filled[order].to(device), real[order].to(device), segment.to(device), (B, L))

    @property
    def rows(self) -> int:
        return self.segment.shape[0]

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, ...] -> [R, L, ...]: the real positions end to end, zeros in a row's padding."""
        B, L = self.shape
        flat = x.reshape(B * L, *x.shape[2:])
        out = flat.new_zeros(self.rows * L, *flat.shape[1:]).index_copy(0, self.target, flat[self.real])
        return out.view(self.rows, L, *x.shape[2:])

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """[R, L, ...] -> [B, L, ...]: each real position back in its place, zeros at the padding."""
        B, L = self.shape
        flat = x.reshape(self.rows * L, *x.shape[2:])
        out = flat.new_zeros(B * L, *flat.shape[1:]).index_copy(0, self.real, flat[self.target])
        return out.view(B, L, *x.shape[2:])

    def attention_mask(self) -> torch.Tensor:
        """[R, 1, L, L] boolean (True = attend): causal within each sample, nothing across samples; a row's padding
        attends to itself only (no empty softmax rows)."""
        L = self.shape[1]
        same = self.segment[:, :, None] == self.segment[:, None, :]
        causal = torch.ones(L, L, dtype=torch.bool, device=self.segment.device).tril()
        pad = self.segment[:, :, None] < 0
        eye = torch.eye(L, dtype=torch.bool, device=self.segment.device)
        return ((same & causal & ~pad) | (pad & eye))[:, None]
