"""Training: task heads and the one training loop shared by linear probing and fine-tuning."""
