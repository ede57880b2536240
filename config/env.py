"""Small typed readers for settings that come from the environment.

Every reader raises `ConfigError` with one line naming the variable, so a bad
value stops the process with a message an operator can act on.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


class ConfigError(Exception):
    """A setting from the environment is missing or invalid."""


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise ConfigError(f"{name} is not set")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, not {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_counts(name: str, default: dict[str, int], *, maximum: int = 32) -> dict[str, int]:
    """`kind=count,...` over the kinds of `default`, e.g. WORKERS=backup=4,restore=1; a kind left out is 0.

    Leaving kinds out is what a machine that runs only some of them wants (say, backups only).
    """
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return dict(default)
    example = ",".join(f"{kind}={count}" for kind, count in default.items())
    counts = dict.fromkeys(default, 0)
    for item in (part.strip() for part in raw.split(",")):
        kind, sep, count = (word.strip() for word in item.partition("="))
        if not sep or kind not in counts or not count.isdigit():
            raise ConfigError(f"{name} must look like {example} (kinds: {', '.join(default)}), not {item!r}")
        if int(count) > maximum:
            raise ConfigError(f"{name} allows at most {maximum} per kind, not {kind}={count}")
        counts[kind] = int(count)
    return counts


def env_dir(name: str, default: Path) -> Path:
    """A directory that is created when missing; unusable paths are reported by name."""
    path = Path(os.environ.get(name) or default).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{name}={path} cannot be created: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"{name}={path} is not writable")
    return path


def env_secret(name: str) -> str:
    """An optional secret from `name`, or from the file named by `name_FILE` (say, a Docker or systemd
    credential); "" when neither is set."""
    if os.environ.get(name):
        return os.environ[name]
    path = os.environ.get(f"{name}_FILE")
    if not path:
        return ""
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{name}_FILE cannot be read: {exc.strerror}") from None


def secret_from_file(name: str, path: Path, *, length: int = 50) -> str:
    """Read `name` (or `name_FILE`) from the environment, else a secret generated once into `path`."""
    if os.environ.get(name):
        value = os.environ[name]
    elif os.environ.get(f"{name}_FILE"):
        try:
            value = Path(os.environ[f"{name}_FILE"]).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE cannot be read: {exc.strerror}") from None
    else:
        if not path.exists():
            # O_EXCL: two processes starting at once must not write two different keys.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_urlsafe(length))
        value = path.read_text().strip()
    if len(value) < 32:
        raise ConfigError(f"{name} is too short: use at least 32 characters")
    return value


@dataclass(frozen=True)
class DatabaseURL:
    engine: str
    name: str
    user: str = ""
    password: str = ""
    host: str = ""
    port: str = ""

    def as_django(self) -> dict[str, object]:
        config: dict[str, object] = {
            "ENGINE": self.engine,
            "NAME": self.name,
            "USER": self.user,
            "PASSWORD": self.password,
            "HOST": self.host,
            "PORT": self.port,
            "ATOMIC_REQUESTS": False,
        }
        if self.engine.endswith("sqlite3"):
            # Several processes (web, workers, scheduler) share the file: wait for locks
            # instead of failing at once, and let readers run beside one writer.
            config["OPTIONS"] = {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
        else:
            config["CONN_MAX_AGE"] = 60
            config["CONN_HEALTH_CHECKS"] = True
        return config


def parse_database_url(name: str, url: str) -> DatabaseURL:
    """`sqlite:////abs/path.db` or `postgres://user:pass@host:port/db` (`?host=/socket/dir` allowed)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if not path or path == "/":
            raise ConfigError(f"{name} must name a file, like sqlite:////var/lib/vmbackup/db.sqlite3")
        # sqlite:////abs/file.db is absolute, sqlite:///file.db relative (as dj-database-url reads them).
        return DatabaseURL(engine="django.db.backends.sqlite3", name=path[1:])
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ConfigError(f"{name} must name a database, like postgres://user:pass@host:5432/vmbackup")
        query = parse_qs(parts.query)
        try:
            port = str(parts.port or "")
        except ValueError:
            raise ConfigError(f"{name} has an invalid port") from None
        return DatabaseURL(
            engine="django.db.backends.postgresql",
            name=database,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            host=query.get("host", [unquote(parts.hostname or "")])[0],
            port=port,
        )
    raise ConfigError(f"{name} must start with sqlite:// or postgres://, not {parts.scheme or url!r}://")


def check_redis_url(name: str, url: str) -> str:
    if urlsplit(url).scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(f"{name} must start with redis://, rediss:// or unix://")
    return url
