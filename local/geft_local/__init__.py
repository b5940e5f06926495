"""Local stand-ins for the outside world (the Flinks Pay sandbox), for tests and the local stack."""
