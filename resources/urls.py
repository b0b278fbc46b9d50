"""The lock database's URL: parsing, masking the password, and the forms each driver takes."""

from __future__ import annotations

import os

from sqlalchemy import exc, make_url
from sqlalchemy.engine import URL

from .errors import LockConfigError

DATABASE_URL_ENV = "LOCK_DATABASE_URL"
LOCK_DRIVER = "postgresql+psycopg"


def resolve_url(database_url: str | None) -> URL:
    """Parse the lock's database URL (or LOCK_DATABASE_URL) and point it at psycopg 3."""
    raw = database_url or os.environ.get(DATABASE_URL_ENV)
    if not raw:
        raise LockConfigError(
            f"Missing config: DistributedLockResource has no database_url and "
            f"{DATABASE_URL_ENV} is not set. Set {DATABASE_URL_ENV} to a PostgreSQL URL such as "
            "postgresql+psycopg://user:password@host:5432/dbname."
        )
    try:
        url = make_url(raw)
    except (exc.ArgumentError, ValueError):
        # The raw text may hold a password, so it is not repeated here.
        raise LockConfigError(
            "Incorrect config: database_url is not a valid URL. Expected the form "
            "postgresql+psycopg://user:password@host:5432/dbname."
        ) from None
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise LockConfigError(
            f"Incorrect config: database_url names the '{url.get_backend_name()}' backend; the "
            "lock needs PostgreSQL (postgresql+psycopg://user:password@host:5432/dbname)."
        )
    if not url.database:
        raise LockConfigError(
            f"Incorrect config: database_url ({safe_url(url)}) names no database; add /dbname."
        )
    return url.set(drivername=LOCK_DRIVER)


def safe_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def server_address(url: URL) -> str:
    """host:port as an operator would look for it (a Unix socket folder counts as the host)."""
    host = url.host or url.query.get("host") or "localhost"
    if isinstance(host, tuple):
        host = ",".join(host)
    return f"{host}:{url.port or 5432}"


def libpq_url(url: str | URL) -> str:
    """The same URL with the plain postgresql:// scheme that psycopg.connect() takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def error_summary(error: BaseException, url: URL) -> str:
    """The driver's first line about an error, with the URL's password masked should it appear."""
    message = str(getattr(error, "orig", None) or error).strip().splitlines()
    line = message[0] if message else type(error).__name__
    if url.password:
        line = line.replace(url.password, "***")
    return line
