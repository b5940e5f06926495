"""The operator CLI: list, show, decide, redrive, replay, policy check, sign."""
