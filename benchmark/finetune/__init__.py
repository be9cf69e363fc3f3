"""Fine-tuning, in reading order:

1. ``methods``: what each method trains (registered like estimators; no torch at import);
2. ``settings``: the optimiser, schedule and sweep a suite sets (``FinetuneConfig``);
3. ``tuned``: the torch modules a method adds (heads, LoRA updates, adapters) on an encoder;
4. ``loop``: the training loop and zero-shot-style accuracy;
5. ``outcomes``: one cell, encoder x method x target x seed, written with its counts.

Importing this package loads no torch; ``tuned``, ``loop`` and ``outcomes`` do.
"""
