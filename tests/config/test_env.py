"""Settings come from the environment; a bad value stops the process with one line naming it."""

from __future__ import annotations

import pytest

from config.env import ConfigError, parse_database_url, secret_from_file
from tests.factories.settings import django_check


def test_postgres_urls_are_parsed():
    db = parse_database_url("DATABASE_URL", "postgres://u%40x:p%2Fw@db.example:5433/backups")
    assert (db.engine, db.name, db.user, db.password, db.host, db.port) == (
        "django.db.backends.postgresql", "backups", "u@x", "p/w", "db.example", "5433",
    )  # fmt: skip


def test_a_socket_directory_can_be_given_as_host():
    assert parse_database_url("DATABASE_URL", "postgresql:///vmb?host=/run/postgresql").host == "/run/postgresql"


def test_sqlite_urls_name_a_file():
    assert parse_database_url("DATABASE_URL", "sqlite:////var/lib/vmb/db.sqlite3").name == "/var/lib/vmb/db.sqlite3"


@pytest.mark.parametrize("url", ["mysql://x/y", "postgres://host/", "sqlite://", "nonsense"])
def test_unsupported_database_urls_name_the_variable(url):
    with pytest.raises(ConfigError, match="^DATABASE_URL"):
        parse_database_url("DATABASE_URL", url)


def test_the_secret_key_is_generated_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = secret_from_file("SECRET_KEY", tmp_path / "secret_key")
    assert len(first) >= 50
    assert secret_from_file("SECRET_KEY", tmp_path / "secret_key") == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_a_short_secret_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "short")
    with pytest.raises(ConfigError, match="SECRET_KEY is too short"):
        secret_from_file("SECRET_KEY", tmp_path / "secret_key")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DEBUG", "maybe", "Configuration error: DEBUG must be true or false, not 'maybe'"),
        ("DATABASE_URL", "mysql://x/y", "Configuration error: DATABASE_URL must start with sqlite:// or postgres://"),
        ("REDIS_URL", "http://x", "Configuration error: REDIS_URL must start with redis://, rediss:// or unix://"),
        ("JOB_TIMEOUT", "soon", "Configuration error: JOB_TIMEOUT must be a whole number, not 'soon'"),
    ],
)
def test_an_invalid_variable_stops_the_process_with_one_line(tmp_path, variable, value, message):
    result = django_check(tmp_path, **{variable: value})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(message)


def test_debug_is_off_unless_asked_for(settings):
    assert settings.DEBUG is False
