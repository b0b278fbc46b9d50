"""Instance Two of the reference design: the same code location under its own app id, its
asset keys under `instance_two/` (one workspace holds both instances)."""

from .definitions import build_definitions

defs = build_definitions(app_id="instance-two", asset_key_prefix="instance_two")
