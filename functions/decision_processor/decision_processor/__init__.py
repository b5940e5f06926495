"""The decision processor Lambda: decide every stored guarantee and confirm it exactly once."""
