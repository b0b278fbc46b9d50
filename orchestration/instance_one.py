"""Instance One of the reference design: the same code location under its own app id, its
asset keys under `instance_one/` (one workspace holds both instances)."""

from .definitions import build_definitions

defs = build_definitions(app_id="instance-one", asset_key_prefix="instance_one")
