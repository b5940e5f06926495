"""Scheduled Lambda jobs: the review timeout and the reconciliation of sessions' final statuses."""
