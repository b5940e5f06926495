"""Checks against the real thing, run by people after a deploy: ``smoke`` (a deployed stack, or the
local one) and ``contract`` (Flinks' answers against what the code reads). ``bin/geft-check``."""
