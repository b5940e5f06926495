"""The webhook receiver Lambda: verify, persist once, acknowledge fast."""
