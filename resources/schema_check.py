"""The start-up check that the lock database has every table and exact function this code calls.

A newer schema is fine as long as it still has them: migrations add a function's next version
beside the old one, so several releases can share one database during a rollout.
"""

from __future__ import annotations

import psycopg

from . import protocol
from .errors import LockSchemaError
from .urls import DATABASE_URL_ENV

# With LOCK_DATABASE_URL set (as the lock reads it), this works as written and shows no password.
MIGRATE_COMMAND = "dlock migrate"


def check_schema(conn: psycopg.Connection, where: str) -> None:
    """Raise LockSchemaError naming what is missing in `where` and the command that adds it."""
    missing = [
        row[0]
        for row in conn.execute(
            protocol.MISSING_OBJECTS,
            {
                "tables": list(protocol.REQUIRED_TABLES),
                "functions": list(protocol.REQUIRED_FUNCTIONS),
            },
        )
    ]
    if not missing:
        return
    fix = (
        f"run `{MIGRATE_COMMAND}` with {DATABASE_URL_ENV} set to this database's URL "
        "(or pass it as --database-url)"
    )
    tables = [name for name in missing if name in protocol.REQUIRED_TABLES]
    if tables:
        raise LockSchemaError(
            f"The lock tables {' and '.join(tables)} are missing in {where}. To create them, {fix}."
        )
    raise LockSchemaError(
        f"The lock schema in {where} lacks the function(s) this code calls: "
        f"{', '.join(missing)}. To apply the migrations of this release, {fix}."
    )
