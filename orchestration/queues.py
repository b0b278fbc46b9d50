"""Lock queue names, in one place: every deployment must agree on them to contend."""

HEARTBEAT_QUEUE = "heartbeat-queue"
HEARTBEAT_ASSET_QUEUE = "heartbeat-asset-queue"
DIGEST_QUEUE = "daily-digest-queue"
INBOX_QUEUE = "inbox-queue"
