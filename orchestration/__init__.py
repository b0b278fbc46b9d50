"""The Dagster code location: hourly heartbeat work, each piece guarded by the lock."""
