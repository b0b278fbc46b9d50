"""The lock database's URL: parsing, masking the password, and the forms each driver takes."""

from __future__ import annotations

import os
import re
from urllib.parse import quote, quote_plus

from sqlalchemy import exc, make_url
from sqlalchemy.engine import URL

from .errors import LockConfigError

DATABASE_URL_ENV = "LOCK_DATABASE_URL"
LOCK_DRIVER = "postgresql+psycopg"
# A query parameter of the lock's own, taken off the URL before it reaches the driver.
PGBOUNCER_PARAM = "pgbouncer"


def resolve_url(database_url: str | None) -> URL:
    """Parse the lock's database URL (or LOCK_DATABASE_URL) and point it at psycopg 3."""
    raw = database_url or os.environ.get(DATABASE_URL_ENV)
    if not raw:
        raise LockConfigError(
            f"Missing config: DistributedLockResource has no database_url and "
            f"{DATABASE_URL_ENV} is not set. Set {DATABASE_URL_ENV} to a PostgreSQL URL such as "
            "postgresql+psycopg://user:password@host:5432/dbname."
        )
    if _authority(raw).count("@") > 1:
        # The parser would take the password's tail for the host and show it in every error.
        raise LockConfigError(
            "Incorrect config: database_url has more than one '@' before the host, so the "
            "password cannot be told from the host; percent-encode the password's special "
            "characters (e.g. '@' as %40, '/' as %2F)."
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


def behind_pgbouncer(url: URL) -> bool:
    """True when database_url ends in ?pgbouncer=true: the lock then connects the way
    PgBouncer's transaction pooling allows (README, "Behind PgBouncer")."""
    value = url.query.get(PGBOUNCER_PARAM, "false")
    if value not in ("true", "false"):
        raise LockConfigError(
            f"Incorrect config: database_url has {PGBOUNCER_PARAM}={value!r}; use "
            f"{PGBOUNCER_PARAM}=true when the URL points at PgBouncer, or leave it out."
        )
    return value == "true"


def _authority(raw: str) -> str:
    """The user:password@host:port part of a URL as written, before any parsing."""
    return re.split(r"[/?#]", raw.partition("://")[2], maxsplit=1)[0]


def _mask_host(host: str) -> str:
    # A host holding '@' is the tail of an unescaped password (resolve_url refuses such URLs).
    return "***@" + host.rpartition("@")[2] if "@" in host else host


def _passwords(url: URL) -> list[str]:
    """Every text that may be (part of) the password: user part, ?password=, a host's head."""
    found = [url.password or ""]
    query = url.query.get("password") or ()
    found.extend((query,) if isinstance(query, str) else query)
    if url.host and "@" in url.host:
        found.append(url.host.rpartition("@")[0])
    return [text for text in found if text]


def safe_url(url: URL) -> str:
    """The URL to show: every form of the password masked (user part, ?password=, host)."""
    shown = url.difference_update_query(["password"])
    if url.host:
        shown = shown.set(host=_mask_host(url.host))
    text = shown.render_as_string(hide_password=True)
    if "password" in url.query:
        text += ("&" if "?" in text else "?") + "password=***"
    return text


def server_address(url: URL) -> str:
    """host:port as an operator would look for it (a Unix socket folder counts as the host)."""
    host = url.host or url.query.get("host") or "localhost"
    if isinstance(host, tuple):
        host = ",".join(host)
    return f"{_mask_host(host)}:{url.port or 5432}"


def libpq_url(url: str | URL) -> str:
    """The same URL with the plain postgresql:// scheme that psycopg.connect() takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def error_summary(error: BaseException, url: URL) -> str:
    """The driver's first line about an error, with the URL's password masked should it appear."""
    message = str(getattr(error, "orig", None) or error).strip().splitlines()
    line = message[0] if message else type(error).__name__
    # Longest first, so a password that contains another one is masked whole; encoded forms
    # too, since a driver or yoyo may repeat the URL as rendered.
    for secret in sorted(_passwords(url), key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            line = line.replace(form, "***")
    return line
