"""Instance Two of the reference design: the same code location under its own app id."""

from .definitions import build_definitions

defs = build_definitions(app_id="instance-two")
