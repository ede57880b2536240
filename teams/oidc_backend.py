"""Sign-in with Microsoft Entra ID: the authentication backend behind the login page's button.

mozilla-django-oidc runs the authorization code flow with PKCE and a nonce (teams.oidc_views); this
backend redeems the code, then checks the ID token itself: RS256 signature against the provider's
published keys, issuer, audience (and `azp`), expiry and nonce. The library checks only signature and
nonce, and lets an expired token's exception escape, so the checks live here, each refusal with a sentence.

The user is found by their Entra object id (`oid`, kept in Profile.external_id), never by name or email,
so an Entra user can never take over a local or directory account that happens to share a name. Roles
and grants come from the `groups` and `roles` claims through teams.mapping at every sign-in; a user none
of whose groups is mapped is refused (and loses what they had).
"""

from __future__ import annotations

import logging
from typing import Any

import jwt
import requests
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from accounts.models import Profile
from audit.actions import record
from teams import oidc
from teams.mapping import apply_external_groups, membership_for

log = logging.getLogger(__name__)

NO_GROUP = "Your Microsoft account is in no group that has a role here; ask an administrator."
LEEWAY = 60  # seconds of clock difference allowed between this server and the provider


class Refused(Exception):
    """The sign-in is refused; the message is the sentence the login page shows."""

    def __init__(self, sentence: str, name: str = "") -> None:
        super().__init__(sentence)
        self.name = name


def refusal(request: HttpRequest) -> str | None:
    """Why the last Entra ID sign-in of this request was refused, if it was."""
    return getattr(request, "_entra_refusal", None)


class EntraIdBackend(OIDCAuthenticationBackend):
    # The library's __init__ reads every endpoint at once; Django builds a backend for each request of a
    # signed-in user (get_user), which must not wait on the provider. Endpoints are read when signing in.
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.UserModel = get_user_model()

    @staticmethod
    def get_settings(attr: str, *args: Any) -> Any:
        return oidc.library_setting(attr, *args)

    def get_user(self, user_id: Any) -> Any:
        """The signed-in user of a session, while active (the library's would keep a disabled user in)."""
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None

    def authenticate(
        self, request: HttpRequest | None, nonce: str | None = None, code_verifier: str | None = None
    ) -> Any:
        """Only the callback's call (with the nonce) reaches here; a user name and password never do."""
        if request is None or nonce is None or "code" not in request.GET or "state" not in request.GET:
            return None
        self.request = request
        try:
            return self._sign_in(request, nonce, code_verifier)
        except (Refused, oidc.OidcUnavailable) as exc:
            name = exc.name if isinstance(exc, Refused) else ""
            request._entra_refusal = str(exc)  # type: ignore[attr-defined]
            record("entra-id", "auth.entra_refused", target_label=name, details={"name": name, "reason": str(exc)})
            return None

    def _sign_in(self, request: HttpRequest, nonce: str, code_verifier: str | None) -> Any:
        token_endpoint = oidc.provider_metadata()["token_endpoint"]
        payload = {
            **oidc.client_credentials(token_endpoint),
            "grant_type": "authorization_code",
            "code": request.GET["code"],
            "redirect_uri": request.build_absolute_uri(reverse("entra:callback")),
        }
        if code_verifier is not None:
            payload["code_verifier"] = code_verifier
        self.OIDC_OP_TOKEN_ENDPOINT = token_endpoint
        try:
            token_info = self.get_token(payload)
        except requests.RequestException as exc:
            raise Refused(_token_refusal(exc)) from None
        id_token = token_info.get("id_token")
        if not isinstance(id_token, str):
            raise Refused("Microsoft's answer held no ID token; sign in again.")
        claims = self.verify_token(id_token, nonce=nonce)
        return self.user_for_claims(claims)

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        """The ID token's claims, once signature, issuer, audience, expiry and nonce are right."""
        config = oidc.configured()
        key = self._signing_key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=config.client_id,
                issuer=config.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.InvalidSignatureError:
            raise Refused("The ID token's signature is not the identity provider's: it was altered.") from None
        except jwt.InvalidAudienceError:
            raise Refused("The ID token was issued to another application (wrong audience).") from None
        except jwt.ExpiredSignatureError:
            raise Refused("The ID token has expired; sign in again.") from None
        except jwt.InvalidIssuerError:
            raise Refused(f"The ID token was not issued by {config.issuer}.") from None
        except jwt.InvalidTokenError as exc:
            raise Refused(f"The ID token is not valid ({type(exc).__name__}).") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != config.client_id:
            raise Refused("The ID token was issued to another application (wrong audience).")
        if claims.get("nonce") != kwargs.get("nonce"):
            raise Refused("The ID token does not belong to this browser's sign-in (nonce); sign in again.")
        return claims

    def _signing_key(self, token: str) -> Any:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Refused("The ID token is not a signed token.") from None
        if header.get("alg") != "RS256":
            raise Refused(f"The ID token is signed with {header.get('alg')!r}, not RS256.")
        for refresh in (False, True):  # a key id not seen yet: the provider may have rolled its keys
            for jwk in oidc.signing_keys(refresh=refresh):
                if jwk.get("kid") == header.get("kid") and jwk.get("kty") == "RSA" and jwk.get("use", "sig") == "sig":
                    return jwt.PyJWK(jwk, algorithm="RS256")
        raise Refused("The ID token's signature is not the identity provider's: no published key signed it.")

    def user_for_claims(self, claims: dict[str, Any]) -> Any:
        """The product's user for these verified claims, with roles and grants from their groups."""
        config = oidc.configured()
        name = str(claims.get("preferred_username") or claims.get("upn") or claims.get("email") or "")[:150]
        external_id = str(claims.get("oid") or claims["sub"])
        if "groups" in (claims.get("_claim_names") or {}):
            raise Refused(
                "Your Microsoft account is in too many groups for the sign-in to list them; ask an administrator "
                "to assign this application's groups or app roles instead.",
                name,
            )
        groups = _strings(claims.get(config.groups_claim)) + _strings(claims.get(config.roles_claim))
        profile = Profile.objects.filter(sign_in=Profile.SignIn.ENTRA, external_id=external_id).first()
        if profile is None:
            if not name:
                raise Refused("Your Microsoft account's token names no user (preferred_username).")
            if self.UserModel.objects.filter(username__iexact=name).exists():
                raise Refused(f"A user named {name} already exists here and does not sign in with Microsoft.", name)
            if membership_for(Profile.SignIn.ENTRA, groups).empty:
                raise Refused(NO_GROUP, name)
        with transaction.atomic():
            user = profile.user if profile is not None else self._create(name, external_id)
            if not user.is_active:
                raise Refused("Your account is disabled here; ask an administrator.", name)
            self._update(user, claims)
            membership = apply_external_groups(user, Profile.SignIn.ENTRA, groups)
        if membership.empty:
            raise Refused(NO_GROUP, name)
        return user

    def _create(self, name: str, external_id: str) -> Any:
        user = self.UserModel(username=name)
        user.set_unusable_password()
        user.save()
        Profile.objects.update_or_create(
            user=user, defaults={"sign_in": Profile.SignIn.ENTRA, "external_id": external_id}
        )
        record("entra-id", "user.created", target=user, details={"sign_in": "entra", "external_id": external_id})
        return user

    def _update(self, user: Any, claims: dict[str, Any]) -> None:
        names = str(claims.get("name") or "").split(" ", 1)
        fields = {
            "email": str(claims.get("email") or "")[:254],
            "first_name": names[0][:150],
            "last_name": (names[1] if len(names) > 1 else "")[:150],
        }
        changed = [field for field, value in fields.items() if getattr(user, field) != value]
        for field in changed:
            setattr(user, field, fields[field])
        if changed:
            user.save(update_fields=changed)


def _token_refusal(exc: requests.RequestException) -> str:
    """The sentence for a token request the provider refused (its OAuth error code, never its body)."""
    error = ""
    if exc.response is not None:
        try:
            error = str(exc.response.json().get("error", ""))
        except ValueError:
            error = f"HTTP {exc.response.status_code}"
    log.warning("Entra ID token request refused: %s", error or type(exc).__name__)
    if error in ("invalid_client", "unauthorized_client"):
        return (
            "Microsoft did not accept this application's credentials (client secret or certificate); "
            "ask an administrator."
        )
    if exc.response is None:
        return "Microsoft's token endpoint did not answer; try again later."
    return "Microsoft did not accept this sign-in's code; sign in again."


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []
