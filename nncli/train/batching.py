"""Batches: shuffled, length-grouped (similar lengths share a batch, so little padding), sharded over processes,
and padded into tensors. Deterministic: the same seed and epoch give the same batches on every process."""

from __future__ import annotations

import random

import numpy as np


def epoch_batches(lengths, batch_size: int, seed: int, group_by_length: bool, *, rank: int = 0,
                  world: int = 1) -> list[list[int]]:
    """This process's batches of one epoch: every world-th batch of one shuffled order shared by all processes."""
    rng = random.Random(seed)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    if group_by_length:
        mega = batch_size * 50
        grouped = []
        for i in range(0, len(idx), mega):
            grouped.extend(sorted(idx[i:i + mega], key=lambda j: -lengths[j]))
        idx = grouped
    batches = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    rng.shuffle(batches)
    if world > 1:
        batches = batches[: len(batches) // world * world][rank::world]
    return batches


def eval_shard(lengths, batch_size: int, *, rank: int = 0, world: int = 1) -> tuple[list[list[int]], int]:
    """Evaluation batches of this process (longest first; every process gets the same count of examples, padded by
    repeating the last one) and how many examples there are in all."""
    order = np.argsort(-np.asarray(lengths), kind="stable").tolist()
    n = len(order)
    per = -(-n // world)
    padded = order + [order[-1]] * (per * world - n)
    mine = padded[rank * per:(rank + 1) * per]
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)], n


def pad(rows: list, idx, value: int, dtype=None):
    """Rows of token ids (lists) as one right-padded (len(idx), longest) tensor."""
    import torch

    width = max(len(rows[i]) for i in idx)
    out = torch.full((len(idx), width), value, dtype=dtype or torch.long)
    for r, i in enumerate(idx):
        seq = rows[i]
        out[r, : len(seq)] = torch.as_tensor(seq)
    return out
