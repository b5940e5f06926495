"""The audit trail Lambda: a history record for every write to the guarantees table, and review notices."""
