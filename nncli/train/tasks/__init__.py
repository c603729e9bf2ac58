"""Task adapters: what differs between tasks, and nothing else (the loop in nncli/train/loop.py owns the rest).

A task supplies (see Task in base.py): the training lengths, collate (indices -> a batch of tensors), the loss,
per-example evaluation outputs (gathered over processes by the loop) and the metrics computed from them, the
parameter groups, and the primary validation metric early stopping watches.
"""
