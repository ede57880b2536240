"""Every URL the product serves, as alice (administrator), bob (restore operator, granted Group-G and
the folder DC1/Branch) and carol (auditor): the status each gets, and for bob that a page he may open
shows his objects and never one outside his grants (`World.hidden_from_bob`).

The routes come from Django's resolver, so a new route without a line in ROUTES fails
`test_every_route_is_in_the_table`. Statuses: 200 (or a redirect) with only the user's objects; 403
where the role may not do it at all; 404 for an object out of the user's scope (they may not know it
exists).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts import tokens
from teams.models import GroupMapping
from tests.factories.people import session_client, token_client
from tests.scope.conftest import DISK, World

Url = Callable[[World], str]
Data = Callable[[World], dict[str, Any]]
PERSONAS = ("alice", "bob", "carol")


@dataclass(frozen=True)
class Case:
    """One request, and the status alice, bob and carol each get; `bob_sees`: strings bob's answer
    holds; `hx`: sent as HTMX sends it (the view answers with its fragment)."""

    url: Url
    expect: tuple[int, int, int]
    method: str = "get"
    data: Data | None = None
    bob_sees: Callable[[World], list[str]] = field(default=lambda world: [])
    hx: bool = False


def page(name: str, *args: Callable[[World], Any], query: str = "") -> Url:
    """The URL of route `name`, its arguments taken from the world."""
    return lambda world: reverse(name, args=[arg(world) for arg in args]) + query


def point(key: str) -> Callable[[World], Any]:
    return lambda world: world.points[key].pk


def vm(name: str) -> Callable[[World], Any]:
    return lambda world: world.vms[name].pk


def job(key: str) -> Callable[[World], Any]:
    return lambda world: world.jobs[key].pk


def ids(*keys: str) -> Callable[[World], list[str]]:
    return lambda world: [str(world.points[key].pk) for key in keys]


def names(*values: str) -> Callable[[World], list[str]]:
    return lambda world: list(values)


def _const(value: Any) -> Callable[[World], Any]:
    return lambda world: value


def _token_of(user: Any) -> int:
    """A new token of `user` (bob's: alice revokes it, bob finds it revoked already, carol may not)."""
    return tokens.create_token(None, user, "scope test")[0].pk


def _directory_mapping() -> int:
    return GroupMapping.objects.create(source=GroupMapping.Source.DIRECTORY, external_group="cn=Sales,dc=corp").pk


def item(world: World) -> dict[str, Any]:
    return {"item": f"{DISK}:{VOLUME}:/etc/hostname"}


OK, FOUND, BAD, STOP_POLLING = 200, 302, 400, 286
DENIED, HIDDEN, NOT_ALLOWED = 403, 404, 405
VOLUME = 1  # the ext4 partition of each point's MBR disk
FILE = "?path=/etc/hostname"
ADMIN_ONLY = (OK, DENIED, DENIED)
ADMIN_ONLY_POST = (FOUND, DENIED, DENIED)
READERS = (OK, DENIED, OK)  # administrators and auditors: the whole estate; helpdesk: nothing
EVERYONE = (OK, OK, OK)
BROWSE_MINE = (OK, OK, DENIED)  # auditors list points but do not open them
BROWSE_OTHERS = (OK, HIDDEN, DENIED)
SEE_MINE = (OK, OK, OK)
SEE_OTHERS = (OK, HIDDEN, OK)


def point_route(name: str, mine: tuple[int, int, int], others: tuple[int, int, int], **case: Any) -> list[Case]:
    """A route on one point: bob's point `g` (mover, taken in Group-G) and `h` (mover, after it moved
    to Group-H: outside bob's grant although bob sees the VM)."""
    query = case.pop("query", "")
    extra = [_const(DISK), _const(VOLUME)] if case.pop("volume", False) else []
    return [
        Case(page(name, point("g"), *extra, query=query), mine, **case),
        Case(page(name, point("h"), *extra, query=query), others, **case),
    ]


def and_fragments(cases: list[Case]) -> list[Case]:
    """The cases as pages and again as the HTMX fragments the same URLs answer (polling, paging)."""
    return cases + [replace(case, hx=True) for case in cases]


def api(path: str, *, query: str = "") -> Url:
    """An API URL; "{g}", "{h}", "{vm}", "{job}", "{group}", "{vc}" filled from the world."""

    def url(world: World) -> str:
        values = {
            "g": world.points["g"].pk,
            "h": world.points["h"].pk,
            "vm": world.vms["mover"].pk,
            "fin": world.vms["fin-01"].pk,
            "bobjob": world.jobs["bob"].pk,
            "alicejob": world.jobs["alice"].pk,
            "group": world.groups["G"].pk,
            "vc": world.vcenter.pk,
        }
        return "/api/" + (path + query).format(**values)

    return url


DOWNLOAD_QUERY = f"?disk={DISK}&volume={VOLUME}&path=/etc/hostname"
ROUTES: dict[str, list[Case]] = {
    "login": [Case(page("login"), EVERYONE)],
    "logout": [Case(page("logout"), (FOUND, FOUND, FOUND), method="post")],
    # Sign in with Microsoft answers only when configured (tests/teams/test_oidc_sign_in.py signs in through it).
    "entra:sign_in": [Case(page("entra:sign_in"), (HIDDEN, HIDDEN, HIDDEN))],
    "entra:callback": [Case(page("entra:callback"), (HIDDEN, HIDDEN, HIDDEN))],
    "dashboard:overview": and_fragments(
        [Case(page("dashboard:overview"), EVERYONE, bob_sees=ids("g", "stay", "branch"))]
    ),
    # Inventory: the administrators' and auditors' view of the whole estate; helpdesk's VMs are on
    # the Recovery page.
    "inventory:index": and_fragments([Case(page("inventory:index"), READERS)]),
    "inventory:vm": [
        Case(page("inventory:vm", vm("mover")), READERS),
        Case(page("inventory:vm", vm("fin-01")), READERS),
    ],
    "inventory:vcenters": [Case(page("inventory:vcenters"), READERS)],
    "inventory:vcenter_add": [Case(page("inventory:vcenter_add"), ADMIN_ONLY)],
    "inventory:vcenter_edit": [Case(page("inventory:vcenter_edit", lambda w: w.vcenter.pk), ADMIN_ONLY)],
    "inventory:vcenter_test": [Case(page("inventory:vcenter_test", lambda w: w.vcenter.pk), ADMIN_ONLY, "post")],
    "inventory:vcenter_sync": [Case(page("inventory:vcenter_sync", lambda w: w.vcenter.pk), ADMIN_ONLY_POST, "post")],
    "inventory:vcenter_remove": [Case(page("inventory:vcenter_remove", lambda w: w.vcenter.pk), ADMIN_ONLY)],
    "inventory:vm_do_not_protect": [
        Case(page("inventory:vm_do_not_protect", vm("ghost-01")), ADMIN_ONLY_POST, "post", _const({"value": "1"}))
    ],
    "protection:index": [Case(page("protection:index"), READERS)],
    "protection:group_create": [Case(page("protection:group_create"), ADMIN_ONLY)],
    "protection:group_preview": [Case(page("protection:group_preview"), READERS, "post")],
    "protection:vm_picker": [Case(page("protection:vm_picker"), READERS)],
    "protection:group": [Case(page("protection:group", lambda w: w.groups["G"].pk), READERS)],
    "protection:group_edit": [Case(page("protection:group_edit", lambda w: w.groups["G"].pk), ADMIN_ONLY)],
    "protection:group_pause": [
        Case(page("protection:group_pause", lambda w: w.groups["F"].pk), ADMIN_ONLY_POST, "post")
    ],
    "protection:group_delete": [Case(page("protection:group_delete", lambda w: w.groups["F"].pk), ADMIN_ONLY)],
    "protection:group_backup_now": [
        Case(page("protection:group_backup_now", lambda w: w.groups["F"].pk), ADMIN_ONLY_POST, "post")
    ],
    "protection:vm_backup_now": [Case(page("protection:vm_backup_now", vm("fin-01")), ADMIN_ONLY_POST, "post")],
    # Recovery: bob sees his VMs and, of mover, only the point taken while it was in Group-G.
    "recovery:index": [Case(page("recovery:index"), EVERYONE, bob_sees=names("mover", "stay-01", "branch-01"))],
    "recovery:vm": [
        Case(page("recovery:vm", vm("mover")), EVERYONE, bob_sees=ids("g")),
        Case(page("recovery:vm", vm("branch-01")), EVERYONE, bob_sees=ids("branch")),
        Case(page("recovery:vm", vm("fin-01")), SEE_OTHERS),
        Case(page("recovery:vm", vm("ghost-01")), SEE_OTHERS),
    ],
    # Search across points reads the catalog: bob's hits hold his points only.
    "recovery:search_all": and_fragments(
        [
            Case(page("recovery:search_all", query="?q=hostname"), EVERYONE, bob_sees=ids("g", "stay", "branch")),
            Case(lambda w: reverse("recovery:search_all") + f"?q=hostname&vm={w.vms['fin-01'].pk}", SEE_OTHERS),
        ]
    ),
    # Rehydration: a confirmed POST (here unconfirmed: sent back to the point) by who may download.
    "recovery:rehydrate": point_route(
        "recovery:rehydrate", (FOUND, FOUND, DENIED), (FOUND, HIDDEN, DENIED), method="post"
    ),
    "recovery:grants": [Case(page("recovery:grants"), ADMIN_ONLY)],
    "recovery:revoke_grant": [Case(page("recovery:revoke_grant", lambda w: w.grant.pk), ADMIN_ONLY_POST, "post")],
    "recovery:point": [
        *point_route("recovery:point", BROWSE_MINE, BROWSE_OTHERS),
        Case(page("recovery:point", point("branch")), BROWSE_MINE),
        Case(page("recovery:point", point("fin")), BROWSE_OTHERS),
    ],
    "recovery:search": and_fragments(point_route("recovery:search", BROWSE_MINE, BROWSE_OTHERS, query="?q=hostname")),
    "recovery:select": point_route("recovery:select", BROWSE_MINE, BROWSE_OTHERS, method="post", data=item),
    "recovery:zip": point_route("recovery:zip", BROWSE_MINE, BROWSE_OTHERS, method="post", data=item),
    "recovery:restore_vm": point_route("recovery:restore_vm", ADMIN_ONLY, ADMIN_ONLY),
    # Instant recoveries: administrators start, migrate and stop them, auditors see the page, helpdesk nothing
    # (no recovery 0: alice is told it does not exist, the others may not ask).
    "instant:index": and_fragments([Case(page("instant:index"), READERS)]),
    "instant:start": point_route("instant:start", ADMIN_ONLY, ADMIN_ONLY),
    "instant:migrate": [Case(page("instant:migrate", _const(0)), (HIDDEN, DENIED, DENIED), "post")],
    "instant:stop": [Case(page("instant:stop", _const(0)), (HIDDEN, DENIED, DENIED), "post")],
    # Restore tests: administrators test now and edit policies, auditors see the page, helpdesk nothing.
    "restore_tests:index": and_fragments([Case(page("restore_tests:index"), READERS)]),
    "restore_tests:start": [Case(page("restore_tests:start"), ADMIN_ONLY_POST, "post")],
    "restore_tests:policy": [
        Case(page("restore_tests:policy", lambda w: w.groups["G"].pk), ADMIN_ONLY),
        Case(page("restore_tests:policy", _const(0)), (HIDDEN, DENIED, DENIED)),
    ],
    "recovery:folder": and_fragments(
        point_route("recovery:folder", BROWSE_MINE, BROWSE_OTHERS, volume=True, query="?path=/etc")
    ),
    "recovery:download": point_route("recovery:download", BROWSE_MINE, BROWSE_OTHERS, volume=True, query=FILE),
    "recovery:versions": and_fragments(
        point_route("recovery:versions", BROWSE_MINE, BROWSE_OTHERS, volume=True, query=FILE)
    ),
    # Jobs: bob sees the jobs he started, never alice's or the scheduler's.
    "jobs:list": [Case(page("jobs:list"), EVERYONE, bob_sees=names("BOB-JOB"))],
    "jobs:system_check": [Case(page("jobs:system_check"), ADMIN_ONLY_POST, "post")],
    "jobs:detail": [
        *and_fragments(
            [
                Case(page("jobs:detail", job("bob")), SEE_MINE, bob_sees=names("BOB-JOB", "log line of BOB-JOB")),
                Case(page("jobs:detail", job("alice")), SEE_OTHERS),
            ]
        ),
        Case(page("jobs:detail", job("system")), SEE_OTHERS),
        # A finished job's polled panel answers 286 (HTMX stops polling), to those who may see it.
        Case(page("jobs:detail", job("system")), (STOP_POLLING, HIDDEN, STOP_POLLING), hx=True),
    ],
    "jobs:row": [Case(page("jobs:row", job("bob")), SEE_MINE), Case(page("jobs:row", job("alice")), SEE_OTHERS)],
    # Only those holding jobs.cancel_jobrun cancel (bob does not, even his own).
    "jobs:cancel": [
        Case(page("jobs:cancel", job("bob")), ADMIN_ONLY_POST, "post"),
        Case(page("jobs:cancel", job("alice")), ADMIN_ONLY_POST, "post"),
    ],
    "vault:index": [Case(page("vault:index"), READERS)],
    "vault:prune_preview": [Case(page("vault:prune_preview"), READERS)],
    "vault:settings": [Case(page("vault:settings"), ADMIN_ONLY, "post")],
    "vault:create_key": [Case(page("vault:create_key"), ADMIN_ONLY, "post")],
    "vault:import_key": [Case(page("vault:import_key"), ADMIN_ONLY, "post")],
    "vault:start": [Case(page("vault:start", _const("usage")), ADMIN_ONLY_POST, "post")],
    "vault:replicate_point": [Case(page("vault:replicate_point", point("fin")), ADMIN_ONLY_POST, "post")],
    "vault:lock_point": [Case(page("vault:lock_point", point("fin")), ADMIN_ONLY_POST, "post")],
    "vault:delete_point": [Case(page("vault:delete_point", point("fin")), ADMIN_ONLY_POST, "post")],
    "vault:recovery_services": [Case(page("vault:recovery_services"), READERS)],
    "alerts:list": [Case(page("alerts:list"), READERS)],
    "alerts:detail": [Case(page("alerts:detail", lambda w: w.alert.pk), READERS)],
    "alerts:row": [Case(page("alerts:row", lambda w: w.alert.pk), READERS)],
    "alerts:acknowledge": [Case(page("alerts:acknowledge", lambda w: w.alert.pk), ADMIN_ONLY_POST, "post")],
    "audit:index": and_fragments([Case(page("audit:index"), READERS)]),
    "audit:export": [Case(page("audit:export"), READERS)],
    "reports:index": [Case(page("reports:index"), (FOUND, DENIED, FOUND))],  # on to the protection report
    "reports:protection": [Case(page("reports:protection"), READERS)],
    "reports:protection_csv": [Case(page("reports:protection_csv"), READERS)],
    # Directory sign-in's settings and group mappings: administrators only (an empty form re-renders).
    "directory:settings": [
        Case(page("directory:settings"), ADMIN_ONLY),
        Case(page("directory:settings"), ADMIN_ONLY, "post"),
    ],
    "directory:disable": [Case(page("directory:disable"), ADMIN_ONLY_POST, "post")],
    "directory:mapping_add": [Case(page("directory:mapping_add"), ADMIN_ONLY, "post")],
    "directory:mapping_remove": [
        Case(page("directory:mapping_remove", lambda w: _directory_mapping()), ADMIN_ONLY_POST, "post")
    ],
    "teams:settings": [Case(page("teams:settings"), EVERYONE)],
    # Users: administrators only (alice acting on herself is refused with a message, a redirect).
    "teams:users": [Case(page("teams:users"), ADMIN_ONLY)],
    "teams:user_new": [Case(page("teams:user_new"), ADMIN_ONLY)],
    "teams:user": [Case(page("teams:user", lambda w: w.grant.user.pk), ADMIN_ONLY)],
    "teams:user_edit": [
        Case(
            page("teams:user_edit", lambda w: w.jobs["alice"].created_by.pk),
            ADMIN_ONLY_POST,
            "post",
            data=_const({"email": "", "roles": ["Backup administrator"]}),
        )
    ],
    **{
        name: [Case(page(name, lambda w: w.jobs["alice"].created_by.pk), ADMIN_ONLY_POST, "post")]
        for name in ("teams:user_disable", "teams:user_enable", "teams:user_reset_password")
    },
    "teams:user_grant_add": [Case(page("teams:user_grant_add", lambda w: w.grant.user.pk), ADMIN_ONLY_POST, "post")],
    "teams:user_grant_remove": [
        Case(page("teams:user_grant_remove", lambda w: w.grant.user.pk, lambda w: w.grant.pk), ADMIN_ONLY_POST, "post")
    ],
    "teams:account": [Case(page("teams:account"), EVERYONE)],
    "teams:password": [Case(page("teams:password"), EVERYONE)],
    # API tokens: everyone their own; someone else's only administrators (404 to others).
    "tokens:mine": [
        *and_fragments([Case(page("tokens:mine"), EVERYONE)]),
        Case(
            page("tokens:mine"),
            EVERYONE,
            "post",
            data=_const({"name": "script", "scope": "read", "expires_in_days": "30"}),
            hx=True,
        ),
    ],
    "tokens:of_user": [Case(page("tokens:of_user", lambda w: w.grant.user.pk), ADMIN_ONLY)],
    "tokens:revoke": [Case(page("tokens:revoke", lambda w: _token_of(w.grant.user)), (FOUND, FOUND, HIDDEN), "post")],
    # The API: the same scope as the pages.
    "api:vcenter-list": [Case(api("v1/vcenters/"), READERS)],
    "api:vcenter-detail": [Case(api("v1/vcenters/{vc}/"), READERS)],
    "api:vm-list": [Case(api("v1/vms/"), READERS)],
    "api:vm-detail": [Case(api("v1/vms/{vm}/"), READERS), Case(api("v1/vms/{fin}/"), READERS)],
    # Where a whole-VM restore can go: for those who restore whole VMs only.
    "api:vm-placement": [
        Case(api("v1/vms/{vm}/placement/"), ADMIN_ONLY),
        Case(api("v1/vms/{fin}/placement/"), ADMIN_ONLY),
    ],
    "api:group-list": [Case(api("v1/groups/"), READERS)],
    "api:group-detail": [Case(api("v1/groups/{group}/"), READERS)],
    "api:job-list": [Case(api("v1/jobs/"), EVERYONE, bob_sees=names("BOB-JOB"))],
    "api:job-detail": [
        Case(api("v1/jobs/{bobjob}/"), SEE_MINE, bob_sees=names("log line of BOB-JOB")),
        Case(api("v1/jobs/{alicejob}/"), SEE_OTHERS),
    ],
    "api:point-list": [
        Case(api("v1/points/"), EVERYONE, bob_sees=ids("g", "stay", "branch")),
        Case(api("v1/points/", query="?vm={vm}"), EVERYONE, bob_sees=ids("g")),
    ],
    "api:point-detail": [Case(api("v1/points/{g}/"), SEE_MINE), Case(api("v1/points/{h}/"), SEE_OTHERS)],
    "api:point-volumes": [
        Case(api("v1/points/{g}/volumes/"), BROWSE_MINE),
        Case(api("v1/points/{h}/volumes/"), BROWSE_OTHERS),
    ],
    "api:point-files": [
        Case(api("v1/points/{g}/files/", query=f"?disk={DISK}&volume={VOLUME}&path=/etc"), BROWSE_MINE),
        Case(api("v1/points/{h}/files/", query=f"?disk={DISK}&volume={VOLUME}&path=/etc"), BROWSE_OTHERS),
    ],
    "api:point-download": [
        Case(api("v1/points/{g}/download/", query=DOWNLOAD_QUERY), BROWSE_MINE),
        Case(api("v1/points/{h}/download/", query=DOWNLOAD_QUERY), BROWSE_OTHERS),
    ],
    "api:point-zip": point_route(
        "api:point-zip", BROWSE_MINE, BROWSE_OTHERS, method="post", data=_const({"items": [f"{DISK}:1:/etc/hostname"]})
    ),
    # Rehydration (unconfirmed here: a 400 saying the cost) by who may download from the point.
    "api:point-rehydrate": [
        Case(api("v1/points/{g}/rehydrate/"), (BAD, BAD, DENIED), "post"),
        Case(api("v1/points/{h}/rehydrate/"), (BAD, HIDDEN, DENIED), "post"),
    ],
    "api:point-restore-vm": [
        Case(api("v1/points/{g}/restore-vm/"), (BAD, DENIED, DENIED), "post"),
        Case(api("v1/points/{h}/restore-vm/"), (BAD, DENIED, DENIED), "post"),
    ],
    "api:backups": [Case(api("v1/backups/"), (BAD, DENIED, DENIED), "post")],
    "api:instant-recovery-list": [
        Case(api("v1/instant-recoveries/"), READERS),
        Case(api("v1/instant-recoveries/"), (BAD, DENIED, DENIED), "post"),
    ],
    "api:instant-recovery-detail": [Case(api("v1/instant-recoveries/999999/"), (HIDDEN, DENIED, HIDDEN))],
    "api:instant-recovery-migrate": [
        Case(api("v1/instant-recoveries/999999/migrate/"), (HIDDEN, DENIED, DENIED), "post")
    ],
    "api:instant-recovery-stop": [Case(api("v1/instant-recoveries/999999/stop/"), (HIDDEN, DENIED, DENIED), "post")],
    "api:restore-test-list": [
        Case(api("v1/restore-tests/"), READERS),
        Case(api("v1/restore-tests/"), (BAD, DENIED, DENIED), "post"),
    ],
    "api:restore-test-detail": [Case(api("v1/restore-tests/999999/"), (HIDDEN, DENIED, HIDDEN))],
    "api:restore-test-policy-detail": [
        Case(api("v1/restore-test-policies/{group}/"), READERS),
        Case(api("v1/restore-test-policies/999999/"), (HIDDEN, DENIED, DENIED), "put"),
    ],
    "api:search": [
        Case(api("v1/search/", query="?q=hostname"), EVERYONE, bob_sees=ids("g", "stay", "branch")),
        Case(api("v1/search/", query="?q=hostname&vm={fin}"), SEE_OTHERS),
    ],
    "api:me": [Case(api("v1/me/"), EVERYONE)],
    "api:schema": [Case(api("schema/"), EVERYONE)],
    "api:docs": [Case(api("docs/"), EVERYONE)],
}


def route_names(patterns: list[Any] | None = None, namespace: str = "") -> Iterator[str]:
    """Every named route of the product, "namespace:name", read from Django's resolver."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from route_names(entry.url_patterns, inner)
        elif isinstance(entry, URLPattern):
            assert entry.name, f"an unnamed route {entry.pattern} cannot be listed here: name it"
            yield f"{namespace}{entry.name}"


def test_every_route_is_in_the_table() -> None:
    served = set(route_names())
    assert not served - set(ROUTES), f"routes without a scope test: add them to ROUTES: {sorted(served - set(ROUTES))}"
    assert not set(ROUTES) - served, f"ROUTES names routes that no longer exist: {sorted(set(ROUTES) - served)}"


class Clients:
    """One session client (the pages) and one token client (the API) per persona, made when first used."""

    def __init__(self, users: dict[str, Any]) -> None:
        self.users = users
        self.made: dict[tuple[str, bool], Client] = {}

    def get(self, persona: str, for_api: bool) -> Client:
        if (persona, for_api) not in self.made:
            self.made[persona, for_api] = (token_client if for_api else session_client)(self.users[persona])
        return self.made[persona, for_api]


def _body(response: Any) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


def _request(client: Client, case: Case, world: World, url: str) -> Any:
    data = case.data(world) if case.data else {}
    if case.method == "post" and url.startswith("/api/"):
        return client.post(url, data, content_type="application/json")  # as a script sends it
    headers = {"HX-Request": "true"} if case.hx else {}
    return getattr(client, case.method)(url, data, headers=headers)


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_each_persona_gets_what_their_role_and_grants_allow(
    name: str, world: World, admin: Any, helpdesk: Any, auditor: Any
) -> None:
    clients = Clients({"alice": admin, "bob": helpdesk, "carol": auditor})
    for case in ROUTES[name]:
        url = case.url(world)
        for persona, expected in zip(PERSONAS, case.expect, strict=True):
            client = clients.get(persona, url.startswith("/api/"))
            response = _request(client, case, world, url)
            body = _body(response)
            request = f"{persona} {case.method.upper()} {url}{' (HTMX)' if case.hx else ''}"
            assert response.status_code == expected, f"{request}: {response.status_code}"
            if persona != "bob" or response.status_code != OK:
                continue
            leaked = [marker for marker in world.hidden_from_bob if marker in body]
            assert not leaked, f"{request} shows what bob's grants do not cover: {leaked}"
            missing = [marker for marker in case.bob_sees(world) if marker not in body]
            assert not missing, f"{request} lacks bob's own objects: {missing}"
