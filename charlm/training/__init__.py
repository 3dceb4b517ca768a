"""A training run: its settings, the compiled steps, checkpoints, distribution and observers."""
