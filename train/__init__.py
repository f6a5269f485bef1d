"""Training: models, datasets, augmentation, matching and loss, the loop, evaluation (PyTorch)."""
