"""Applies sql/migrations/ with yoyo-migrations, which records what it applied.

In the repository the SQL lives in sql/ at the top; a built wheel carries the same folder as
resources/sql (pyproject.toml maps it), so an installed package migrates without a checkout.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL

from .errors import LockConnectionError, LockSchemaError
from .urls import PGBOUNCER_PARAM, error_summary, resolve_url, safe_url, server_address

_PACKAGE_DIR = Path(__file__).resolve().parent


def sql_dir() -> Path:
    """The SQL folder: inside the installed package, else beside it in a checkout."""
    for candidate in (_PACKAGE_DIR / "sql", _PACKAGE_DIR.parent / "sql"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise LockSchemaError(
        f"The lock's SQL migrations are missing: neither {_PACKAGE_DIR / 'sql'} (an installed "
        f"package) nor {_PACKAGE_DIR.parent / 'sql'} (a checkout) holds a migrations folder. "
        "Reinstall the package (pip install dagster-exactly-once) or run from a full checkout."
    )


def migrate(database_url: str | None = None) -> list[str]:
    """Bring the lock schema up to date; returns the ids applied now (empty when current)."""
    # Imported here: yoyo is only needed by the operator command, not by every run.
    from yoyo import get_backend, read_migrations

    # ?pgbouncer= is the lock's own parameter, not the driver's.
    url = resolve_url(database_url).difference_update_query([PGBOUNCER_PARAM])
    migrations_dir = sql_dir() / "migrations"
    try:
        backend = get_backend(url.render_as_string(hide_password=False))
    except Exception as error:
        raise _unreachable(url, error) from None
    migrations = read_migrations(str(migrations_dir))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [migration.id for migration in pending]


def _unreachable(url: URL, error: Exception) -> LockConnectionError:
    return LockConnectionError(
        f"Cannot connect to PostgreSQL at {server_address(url)} (database {url.database}, "
        f"URL {safe_url(url)}): {error_summary(error, url)}"
    )
