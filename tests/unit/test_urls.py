"""Passwords never leave the URL helpers, in any of the forms a URL can carry one."""

from __future__ import annotations

from sqlalchemy import make_url

from resources.urls import error_summary, safe_url, server_address

SECRET = "s3cr3t-Pa55"
AT_PASSWORD = "s3cr3t@Pa55"


def test_url_helpers_mask_every_form_of_password():
    query = make_url(f"postgresql+psycopg://u@h/db?password={SECRET}&sslmode=require")
    assert SECRET not in safe_url(query) and "sslmode=require" in safe_url(query)
    failure = Exception(f'connection failed: password "{SECRET}" rejected')
    assert SECRET not in error_summary(failure, query)

    ambiguous = make_url(f"postgresql+psycopg://u:{AT_PASSWORD}@h:5433/db")
    failure = Exception('could not translate host name "Pa55@h" to address')
    for shown in (
        safe_url(ambiguous),
        server_address(ambiguous),
        error_summary(failure, ambiguous),
    ):
        assert "s3cr3t" not in shown and "Pa55" not in shown
    assert server_address(ambiguous) == "***@h:5433"
