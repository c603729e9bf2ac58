"""Training: one loop (fit) and the task adapters; finetune, distill and sweep are built on it."""
