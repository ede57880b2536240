"""The OpenID Connect provider has one door, as vCenter has inventory/vcenter/: only the Entra ID sign-in's
modules import mozilla-django-oidc or decode JWTs (PyJWT), so how an ID token is trusted is decided in one
place (teams/oidc_backend.py) and a new caller cannot skip its checks."""

from __future__ import annotations

from tests.test_architecture import imports_in, product_files

DOOR = {"teams/oidc.py", "teams/oidc_backend.py", "teams/oidc_views.py"}


def _importers(package: str) -> set[str]:
    return {
        found.path
        for path in product_files()
        for found in imports_in(path)
        if found.module == package or found.module.startswith(f"{package}.")
    }


def test_only_the_entra_id_modules_import_the_oidc_library():
    importers = _importers("mozilla_django_oidc")
    assert "teams/oidc_backend.py" in importers  # the check sees the door itself
    assert importers <= DOOR


def test_only_the_entra_id_modules_decode_json_web_tokens():
    importers = _importers("jwt")
    assert "teams/oidc_backend.py" in importers
    assert importers <= DOOR
