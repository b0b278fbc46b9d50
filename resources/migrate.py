"""Applies sql/migrations/ with yoyo-migrations, which records what it applied."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL

from .database import error_summary, resolve_url, safe_url, server_address
from .errors import LockConnectionError, LockSchemaError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql" / "migrations"


def migrate(database_url: str | None = None) -> list[str]:
    """Bring the lock schema up to date; returns the ids applied now (empty when current)."""
    # Imported here: yoyo is only needed by the operator command, not by every run.
    from yoyo import get_backend, read_migrations

    url = resolve_url(database_url)
    if not MIGRATIONS_DIR.is_dir():
        # sql/ sits beside the packages in the checkout; a built wheel does not carry it.
        raise LockSchemaError(
            f"The migrations folder {MIGRATIONS_DIR} is missing. Run dlock from a checkout of "
            "the project installed with `pip install -e .` (as `make` does)."
        )
    try:
        backend = get_backend(url.render_as_string(hide_password=False))
    except Exception as error:
        raise _unreachable(url, error) from None
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [migration.id for migration in pending]


def _unreachable(url: URL, error: Exception) -> LockConnectionError:
    return LockConnectionError(
        f"Cannot connect to PostgreSQL at {server_address(url)} (database {url.database}, "
        f"URL {safe_url(url)}): {error_summary(error, url)}"
    )
