"""Lock queue names, in one place: every deployment must agree on them to contend."""

HEARTBEAT_QUEUE = "heartbeat-queue"
HEARTBEAT_ASSET_QUEUE = "heartbeat-asset-queue"
# The lock's own upkeep (pruning job_logs): one prune per day across every deployment.
MAINTENANCE_QUEUE = "dlock-maintenance"
DIGEST_QUEUE = "daily-digest-queue"
INBOX_QUEUE = "inbox-queue"
