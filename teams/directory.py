"""The door to the Active Directory / LDAP server (python-ldap, django-auth-ldap's searches): which
settings apply, the TLS options every connection gets, the Directory page's test, and one sentence
for each way talking to the directory fails.

TLS is always verified: `ldaps://`, or `ldap://` with StartTLS, against the configured CA file (the
system's CAs when blank), with the server's name checked; plain LDAP is refused, since simple binds
would send passwords in clear. Settings come from the LDAP_* environment variables when
LDAP_SERVER_URI is set (config/settings.py collects them), otherwise from the saved DirectoryConfig.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ldap
import ldap.filter
from django.conf import settings
from django_auth_ldap.config import (
    LDAPSearch,
    LDAPSettings,
    NestedActiveDirectoryGroupType,
    NestedGroupOfNamesType,
)

from teams.models import DirectoryConfig

NETWORK_TIMEOUT = 5  # seconds to open a connection (an unreachable server must not hold a sign-in)
OPERATION_TIMEOUT = 10
GROUP_CLASSES: dict[str, str] = {
    DirectoryConfig.GroupType.ACTIVE_DIRECTORY: "(objectClass=group)",
    DirectoryConfig.GroupType.GROUP_OF_NAMES: "(objectClass=groupOfNames)",
}


class DirectoryError(Exception):
    """Talking to the directory failed; the message is one sentence for the person who configures it."""


@dataclass(frozen=True)
class DirectorySettings:
    server_uri: str
    start_tls: bool = False
    ca_file: str = ""
    bind_dn: str = ""
    bind_password: str = field(default="", repr=False)
    user_search_base: str = ""
    user_search_filter: str = "(sAMAccountName=%(user)s)"
    group_search_base: str = ""
    group_type: str = DirectoryConfig.GroupType.ACTIVE_DIRECTORY
    from_environment: bool = False

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.server_uri)
        return parts.hostname or "", parts.port or (636 if parts.scheme == "ldaps" else 389)

    def problems(self) -> list[str]:
        """What makes these settings unusable, as sentences (empty when they can be tried)."""
        found = []
        scheme = urlsplit(self.server_uri).scheme.lower()
        if scheme not in ("ldaps", "ldap") or not self.address[0]:
            found.append("The server address must look like ldaps://dc1.corp.example or ldap://… with StartTLS.")
        elif scheme == "ldap" and not self.start_tls:
            found.append("Plain ldap:// would send passwords in clear: use ldaps://, or turn StartTLS on.")
        elif scheme == "ldaps" and self.start_tls:
            found.append("StartTLS is for ldap:// addresses; an ldaps:// connection is encrypted already.")
        if self.ca_file and not Path(self.ca_file).is_file():
            found.append(f"The CA file {self.ca_file} does not exist on this server.")
        if "%(user)s" not in self.user_search_filter:
            found.append("The user filter must contain %(user)s, where the name typed at sign-in goes.")
        for label, value in (
            ("user search base", self.user_search_base),
            ("group search base", self.group_search_base),
        ):
            if not value.strip():
                found.append(f"The {label} is missing.")
        if self.bind_dn and not self.bind_password:
            found.append("The bind account's password is missing.")
        return found


def environment_settings() -> DirectorySettings | None:
    env: dict[str, Any] = getattr(settings, "LDAP_ENVIRONMENT", None) or {}
    if not env.get("server_uri"):
        return None
    return DirectorySettings(**env, from_environment=True)


def saved_settings(config: DirectoryConfig) -> DirectorySettings:
    return DirectorySettings(
        server_uri=config.server_uri,
        start_tls=config.start_tls,
        ca_file=config.ca_file,
        bind_dn=config.bind_dn,
        bind_password=config.bind_password,
        user_search_base=config.user_search_base,
        user_search_filter=config.user_search_filter,
        group_search_base=config.group_search_base,
        group_type=config.group_type,
    )


def current_settings() -> DirectorySettings | None:
    """The settings sign-in uses now: the environment's, else the saved and enabled ones, else None."""
    from_env = environment_settings()
    if from_env is not None:
        return from_env
    config = DirectoryConfig.objects.filter(pk=1, enabled=True).first()
    return saved_settings(config) if config is not None and config.server_uri else None


def connection_options(s: DirectorySettings) -> dict[int, Any]:
    """Options of every connection, in order: a new TLS context (OPT_X_TLS_NEWCTX) must come last."""
    options: dict[int, Any] = {ldap.OPT_X_TLS_REQUIRE_CERT: ldap.OPT_X_TLS_DEMAND}
    if s.ca_file:
        options[ldap.OPT_X_TLS_CACERTFILE] = s.ca_file
    options[ldap.OPT_NETWORK_TIMEOUT] = NETWORK_TIMEOUT
    options[ldap.OPT_TIMEOUT] = OPERATION_TIMEOUT
    options[ldap.OPT_REFERRALS] = 0  # Active Directory's referrals would be followed unauthenticated
    options[ldap.OPT_X_TLS_NEWCTX] = 0
    return options


def group_type(s: DirectorySettings) -> Any:
    if s.group_type == DirectoryConfig.GroupType.GROUP_OF_NAMES:
        return NestedGroupOfNamesType()
    return NestedActiveDirectoryGroupType()


def auth_ldap_settings(s: DirectorySettings) -> LDAPSettings:
    """django-auth-ldap's settings object for these settings (nothing read from Django's settings:
    the prefix names none). Roles come from teams.mapping, not from django-auth-ldap's mirroring."""
    values = {
        "SERVER_URI": s.server_uri,
        "START_TLS": s.start_tls,
        "CONNECTION_OPTIONS": connection_options(s),
        "BIND_DN": s.bind_dn,
        "BIND_PASSWORD": s.bind_password,
        "USER_SEARCH": LDAPSearch(s.user_search_base, ldap.SCOPE_SUBTREE, s.user_search_filter),
        "GROUP_SEARCH": LDAPSearch(s.group_search_base, ldap.SCOPE_SUBTREE, GROUP_CLASSES[s.group_type]),
        "GROUP_TYPE": group_type(s),
        "USER_ATTR_MAP": {"first_name": "givenName", "last_name": "sn", "email": "mail"},
        "ALWAYS_UPDATE_USER": True,
    }
    return LDAPSettings(prefix="VMB_DIRECTORY_UNUSED_", defaults=values)


def connect(s: DirectorySettings) -> Any:
    """A connection bound as the bind account (anonymously without one); DirectoryError otherwise."""
    try:
        conn = ldap.initialize(s.server_uri, bytes_mode=False)
        for option, value in connection_options(s).items():
            conn.set_option(option, value)
        if s.start_tls:
            conn.start_tls_s()
        conn.simple_bind_s(s.bind_dn, s.bind_password)
    except ldap.LDAPError as exc:
        raise DirectoryError(explain(exc, s)) from None
    return conn


def explain(exc: ldap.LDAPError, s: DirectorySettings, *, base: str = "") -> str:
    """One sentence for a python-ldap error (never the bind password)."""
    if isinstance(exc, ldap.INVALID_CREDENTIALS):
        return "The directory refused the bind account: check its DN and password."
    if isinstance(exc, ldap.SERVER_DOWN | ldap.CONNECT_ERROR | ldap.TIMEOUT):
        return _diagnose_connection(s)
    if isinstance(exc, ldap.NO_SUCH_OBJECT):
        return f"The search base {base or '(given)'} does not exist in the directory."
    if isinstance(exc, ldap.FILTER_ERROR):
        return "The user filter is not a valid LDAP filter."
    if isinstance(exc, ldap.INSUFFICIENT_ACCESS | ldap.STRONG_AUTH_REQUIRED):
        return "The directory refused the bind account this request: it lacks the right to read users and groups."
    detail = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return f"The directory answered: {detail.get('desc', type(exc).__name__)} {detail.get('info', '')}".strip() + "."


def _diagnose_connection(s: DirectorySettings) -> str:
    """python-ldap says only "Can't contact LDAP server" for a closed port and an untrusted certificate
    alike; a TCP connection and, for ldaps://, a TLS handshake of our own tell them apart."""
    host, port = s.address
    try:
        raw = socket.create_connection((host, port), timeout=NETWORK_TIMEOUT)
    except OSError as exc:
        return f"The directory server {host}:{port} could not be reached ({exc.strerror or exc})."
    trusted_by = f"the CA file {s.ca_file}" if s.ca_file else "the system's trusted CAs"
    with raw:
        if s.start_tls:
            return (
                f"StartTLS with {host}:{port} failed: its certificate is not signed by {trusted_by}, "
                "does not name the host, or the server does not offer StartTLS."
            )
        context = ssl.create_default_context(cafile=s.ca_file or None)
        try:
            with context.wrap_socket(raw, server_hostname=host):
                pass
        except ssl.SSLCertVerificationError as exc:
            return (
                f"The certificate of {host}:{port} is not trusted: {exc.verify_message} (checked against {trusted_by})."
            )
        except (ssl.SSLError, OSError) as exc:
            return f"No TLS connection could be made with {host}:{port} ({exc})."
    return f"The directory server {host}:{port} accepted the connection but did not answer LDAP."


@dataclass(frozen=True)
class CheckResult:
    user_dn: str
    group_dns: list[str]


def check(s: DirectorySettings, username: str) -> CheckResult:
    """The Directory page's test: bind as the bind account, look the user up with the user filter,
    and read their groups (nested, as sign-in does). DirectoryError names the step that failed."""
    problems = s.problems()
    if problems:
        raise DirectoryError(" ".join(problems))
    conn = connect(s)
    try:
        for base in (s.user_search_base, s.group_search_base):
            try:
                conn.search_s(base, ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"])
            except ldap.LDAPError as exc:
                raise DirectoryError(explain(exc, s, base=base)) from None
        query = s.user_search_filter % {"user": ldap.filter.escape_filter_chars(username)}
        try:
            found = conn.search_s(s.user_search_base, ldap.SCOPE_SUBTREE, query, ["1.1"])
        except ldap.LDAPError as exc:
            raise DirectoryError(explain(exc, s, base=s.user_search_base)) from None
        entries = [dn for dn, _ in found if dn]
        if len(entries) != 1:
            many = "several users match" if entries else "no user matches"
            raise DirectoryError(f"The bind and search worked, but {many} {username!r} under {s.user_search_base}.")
        try:
            return CheckResult(entries[0], groups_of(conn, s, entries[0]))
        except ldap.LDAPError as exc:
            raise DirectoryError(explain(exc, s, base=s.group_search_base)) from None
    finally:
        conn.unbind_s()


MAX_NESTING = 20


def groups_of(conn: Any, s: DirectorySettings, member_dn: str) -> list[str]:
    """The groups under the group search base that hold `member_dn`, directly or through groups in
    groups (as django-auth-ldap's nested group types; a cycle ends the walk). Errors are raised, never
    taken for "no groups": sign-in would otherwise take a role away because the directory hiccuped."""
    found: dict[str, str] = {}
    frontier, seen = {member_dn}, set()
    for _ in range(MAX_NESTING):
        if not frontier:
            break
        terms = "".join(f"(member={ldap.filter.escape_filter_chars(dn)})" for dn in sorted(frontier))
        query = f"(&{GROUP_CLASSES[s.group_type]}(|{terms}))"
        results = conn.search_s(s.group_search_base, ldap.SCOPE_SUBTREE, query, ["1.1"])
        seen |= {dn.lower() for dn in frontier}
        new = {dn for dn, _ in results if dn and dn.lower() not in found}
        found.update((dn.lower(), dn) for dn in new)
        frontier = {dn for dn in new if dn.lower() not in seen}
    return sorted(found.values(), key=str.lower)


def with_password(s: DirectorySettings, password: str) -> DirectorySettings:
    return replace(s, bind_password=password)
