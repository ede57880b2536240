"""Settings, read from the environment (see README "Configuration").

Nothing secret has a default: SECRET_KEY and the field-encryption key are generated
once into DATA_DIR when not given, so a fresh install is never running on a known key.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from config.env import (
    ConfigError,
    check_redis_url,
    env_bool,
    env_counts,
    env_dir,
    env_int,
    env_list,
    env_secret,
    env_str,
    parse_database_url,
    secret_from_file,
)
from config.oidc import read_entra_id

BASE_DIR = Path(__file__).resolve().parent.parent

try:
    DATA_DIR = env_dir("DATA_DIR", BASE_DIR / "data")
    SECRET_KEY = secret_from_file("SECRET_KEY", DATA_DIR / "secret_key")
    # Encrypts vCenter passwords and other secrets at rest (Fernet). Kept apart from SECRET_KEY so
    # rotating sessions never makes stored credentials unreadable.
    FIELD_ENCRYPTION_KEY = secret_from_file("FIELD_ENCRYPTION_KEY", DATA_DIR / "field_key")
    DEBUG = env_bool("DEBUG", False)
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
    CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
    DATABASES = {
        "default": parse_database_url(
            "DATABASE_URL", env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'vmbackup.sqlite3'}")
        ).as_django()
    }
    # The private Redis that `make run` starts listens on a socket inside DATA_DIR, so two
    # instances with different DATA_DIRs never share queues.
    REDIS_URL = check_redis_url("REDIS_URL", env_str("REDIS_URL", f"unix://{DATA_DIR / 'redis.sock'}?db=0"))
    JOB_TIMEOUT = env_int("JOB_TIMEOUT", 24 * 3600, minimum=60)
    # This machine's name in running job rows ("name:pid"): the orphan reaper errors at once the rows
    # whose process on this machine is gone, and leaves other machines' rows to RQ's registry. Set it
    # where several worker machines share a host name (containers, clones).
    MACHINE_NAME = env_str("MACHINE_NAME", socket.gethostname())
    SECURE_COOKIES = env_bool("SECURE_COOKIES", False)
    # Directory sign-in (README "Directory sign-in"): with LDAP_SERVER_URI set, these replace the
    # Directory settings page's (teams/directory.py checks the rest before each use).
    LDAP_ENVIRONMENT = {
        "server_uri": env_str("LDAP_SERVER_URI", ""),
        "start_tls": env_bool("LDAP_START_TLS", False),
        "ca_file": env_str("LDAP_CA_FILE", ""),
        "bind_dn": env_str("LDAP_BIND_DN", ""),
        "bind_password": env_secret("LDAP_BIND_PASSWORD"),  # a secret: never logged
        "user_search_base": env_str("LDAP_USER_SEARCH_BASE", ""),
        "user_search_filter": env_str("LDAP_USER_FILTER", "(sAMAccountName=%(user)s)"),
        "group_search_base": env_str("LDAP_GROUP_SEARCH_BASE", ""),
        "group_type": env_str("LDAP_GROUP_TYPE", "active_directory"),
    }
    if LDAP_ENVIRONMENT["group_type"] not in ("active_directory", "group_of_names"):
        raise ConfigError("LDAP_GROUP_TYPE must be active_directory or group_of_names")
    if str(LDAP_ENVIRONMENT["server_uri"]).startswith("ldap://") and not LDAP_ENVIRONMENT["start_tls"]:
        raise ConfigError("LDAP_SERVER_URI is plain ldap://: use ldaps://, or set LDAP_START_TLS=true")
    # Sign-in throttling (accounts/throttle.py): this many wrong passwords lock the account for the
    # client's address for this many minutes.
    LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1, maximum=1000)
    LOGIN_LOCKOUT_MINUTES = env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1, maximum=7 * 24 * 60)
    # The production profile (README "Deploying"): behind a TLS proxy that sets X-Forwarded-Proto.
    BEHIND_PROXY = env_bool("BEHIND_PROXY", False)
    HSTS_SECONDS = env_int("HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    HSTS_PRELOAD = env_bool("HSTS_PRELOAD", False)
    # Plain HTTP to the vault only for the Azure Storage emulator on this machine (vault/endpoints.py).
    VAULT_ALLOW_HTTP_EMULATOR = env_bool("VAULT_ALLOW_HTTP_EMULATOR", False)
except ConfigError as exc:
    sys.stderr.write(f"Configuration error: {exc}\n")
    raise SystemExit(2) from None

try:
    # The local chunk store. Workers on several machines share it (and the database and Redis).
    BACKUP_STORE_DIR = env_dir("STORE_DIR", DATA_DIR / "store")
    BACKUP_STORE_QUOTA = env_int("STORE_QUOTA_GB", 0, minimum=0) * 1024**3 or None
    # Backups running at once across all workers and machines (each group also has its parallelism).
    MAX_CONCURRENT_BACKUPS = env_int("MAX_CONCURRENT_BACKUPS", 8, minimum=1, maximum=256)
    # The RQ workers `make run` starts, by kind; each kind takes its queues in this order. Backups and
    # restores have workers of their own, and the short housekeeping jobs (maintenance: scheduler tick,
    # reaper, alerts) and the long vault jobs never share one, so none of them waits behind another.
    WORKER_QUEUES = {
        "backup": ("backup",),
        "restore": ("restore",),
        "maintenance": ("maintenance", "default"),
        "vault": ("vault", "default"),
        # Restore tests mostly wait (for a guest's heartbeat): their own workers, so they delay no restore.
        "verify": ("verify",),
    }
    WORKERS = env_counts("WORKERS", {"backup": 2, "restore": 1, "maintenance": 1, "vault": 1, "verify": 2})
    # Seconds `make run` waits at start for each service it needs to answer (Redis loading its
    # append-only file, PostgreSQL recovering after a power loss, the simulator).
    START_TIMEOUT = env_int("START_TIMEOUT", 120, minimum=1)
    # Instant VM recovery (instant/): served points' mounts and overlays, and the private NFS server
    # that exports them. ESXi mounts NFS 4.1 on port 2049 only; the address must be one the hosts reach.
    INSTANT_DIR = env_dir("INSTANT_DIR", DATA_DIR / "instant")
    INSTANT_NFS_ADDRESS = env_str("INSTANT_NFS_ADDRESS", "127.0.0.1")
    INSTANT_NFS_PORT = env_int("INSTANT_NFS_PORT", 2049, minimum=1, maximum=65535)
    # Vault chunks instant recoveries fetched, kept on disk for all of them (INSTANT_DIR/cache).
    INSTANT_SHARED_CACHE_MB = env_int("INSTANT_SHARED_CACHE_MB", 8192, minimum=0)
except ConfigError as exc:
    sys.stderr.write(f"Configuration error: {exc}\n")
    raise SystemExit(2) from None

try:
    # Alerts (alerts/): mail through Django's email framework; without EMAIL_HOST mail goes to the console.
    EMAIL_HOST = env_str("EMAIL_HOST", "")
    EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")  # a secret: never logged
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
    EMAIL_TIMEOUT = 10  # seconds: a mail server that hangs must not hold up the alert evaluation
    EMAIL_BACKEND = f"django.core.mail.backends.{'smtp' if EMAIL_HOST else 'console'}.EmailBackend"
    DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "VM Backup <vmbackup@localhost>")
    ALERT_EMAILS = env_list("ALERT_EMAILS", [])
    if any("@" not in address for address in ALERT_EMAILS):
        raise ConfigError("ALERT_EMAILS must be comma-separated email addresses")
    ALERT_WEBHOOK_URL = env_str("ALERT_WEBHOOK_URL", "")
    if ALERT_WEBHOOK_URL and not ALERT_WEBHOOK_URL.startswith(("https://", "http://")):
        raise ConfigError("ALERT_WEBHOOK_URL must start with https:// or http://")
    # The HMAC-SHA256 key of the webhook's X-VMBackup-Signature header (a secret: never logged).
    ALERT_WEBHOOK_SECRET = env_str("ALERT_WEBHOOK_SECRET", "")
    if ALERT_WEBHOOK_SECRET and len(ALERT_WEBHOOK_SECRET) < 16:
        raise ConfigError("ALERT_WEBHOOK_SECRET is too short: use at least 16 characters")
    STORE_NEARLY_FULL_PERCENT = env_int("STORE_NEARLY_FULL_PERCENT", 90, minimum=1, maximum=100)
    REPLICATION_LAG_HOURS = env_int("REPLICATION_LAG_HOURS", 24, minimum=1)
    # An instant recovery still running from its backup after this long raises an alert: the VM runs on
    # the backup server's disks until it is migrated to production storage.
    INSTANT_ALERT_HOURS = env_int("INSTANT_ALERT_HOURS", 24, minimum=1)
except ConfigError as exc:
    sys.stderr.write(f"Configuration error: {exc}\n")
    raise SystemExit(2) from None

try:
    # Sign in with Microsoft Entra ID (OpenID Connect; config/oidc.py, teams.oidc_backend): None unless
    # OIDC_CLIENT_ID is set. Only then does the login page show the button and the backend below count.
    ENTRA_ID = read_entra_id()
except ConfigError as exc:
    sys.stderr.write(f"Configuration error: {exc}\n")
    raise SystemExit(2) from None

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "django_rq",
    "template_partials",
    "accounts",
    "audit",
    "jobs",
    "dashboard",
    "inventory",
    "protection",
    "vault",
    "recovery",
    "instant",
    "restore_tests",
    "reports",
    "alerts",
    "teams",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "lib.security.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "accounts.middleware.PasswordChangeRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "lib.htmx.VaryOnHtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.roles",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "login"
# Local passwords first, then the directory (teams/directory_backend.py; idle until configured).
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "teams.directory_backend.DirectoryBackend",
]
if ENTRA_ID is not None:
    AUTHENTICATION_BACKENDS.append("teams.oidc_backend.EntraIdBackend")

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Serve from the app and static dirs directly too, so `collectstatic` is an optimisation, not a must.
WHITENOISE_USE_FINDERS = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_AGE = 8 * 3600
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Served over HTTPS (SECURE_COOKIES=true): plain HTTP is redirected, and browsers are told to use
# HTTPS only for HSTS_SECONDS (the host and its subdomains). `manage.py check --deploy` is then clean.
SECURE_SSL_REDIRECT = SECURE_COOKIES
SECURE_HSTS_SECONDS = HSTS_SECONDS if SECURE_COOKIES else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_COOKIES
SECURE_HSTS_PRELOAD = SECURE_COOKIES and HSTS_PRELOAD
# Preloading is a commitment of the whole registered domain (submitted to the browsers' lists), which
# only the domain's owner can make; off unless HSTS_PRELOAD=true, so the check that asks for it is off.
SILENCED_SYSTEM_CHECKS = [] if HSTS_PRELOAD else ["security.W021"]
if BEHIND_PROXY:
    # Trusted only from the proxy, which must set (never pass through) this header: README "Deploying".
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Only the product's own files (HTMX included) may run, style or frame anything (lib/security.py).
CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "object-src": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
    "base-uri": "'self'",
}

RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": JOB_TIMEOUT}
    for name in ("default", "backup", "restore", "maintenance", "vault", "verify")
}
# django-rq's default commit mode ("on_db_commit") enqueues when the surrounding transaction
# commits, so a worker never picks up a job whose JobRun row it cannot see yet.
RQ_SHOW_ADMIN_LINK = False

# The JSON API (api/): scripts send "Authorization: Token <key>" (accounts.ApiToken; My account or
# manage.py token create); the browser's
# session works too (with CSRF). Nothing is anonymous; every view also names the permission it needs.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser", "rest_framework.parsers.FormParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "api.pagination.Pagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "VM Backup API",
    "VERSION": "1.0.0",
    "DESCRIPTION": "Inventory, protection groups, jobs and recovery points of VM Backup; start backups and "
    "restores; list and download files from recovery points. Send `Authorization: Token <key>` "
    "(created on My account or with `manage.py token create USER`; a read-only token may only read). "
    "Permissions are those of the user's role, as on the pages.",
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "PolicyConsistencyEnum": "protection.models.Policy.Consistency",
        "PointConsistencyEnum": "vault.models.RecoveryPoint.Consistency",
    },
    # Swagger UI from drf-spectacular-sidecar's static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
