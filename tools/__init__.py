"""Tooling around the code location (what `make run` and `make dev` start); Dagster loads none
of it."""
