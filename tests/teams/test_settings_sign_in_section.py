"""The Settings page tells an administrator how people sign in (directory, Entra ID) and links the
Directory settings; other roles do not see that section."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_an_administrator_sees_sign_in_methods_and_the_directory_link(as_admin):
    page = as_admin.get("/settings/").content.decode()
    assert "<h2>Sign-in</h2>" in page
    assert 'href="/settings/directory/"' in page
    assert "not configured" in page  # neither is, in tests


@pytest.mark.parametrize("persona", ["as_helpdesk", "as_auditor"])
def test_other_roles_do_not_see_the_sign_in_section(persona, request):
    page = request.getfixturevalue(persona).get("/settings/")
    assert page.status_code in (200, 403)
    assert "<h2>Sign-in</h2>" not in page.content.decode()
