from typing import Any

from django.http import HttpRequest

from accounts.roles import user_roles


def roles(request: HttpRequest) -> dict[str, Any]:
    return {"user_roles": user_roles(request.user) if hasattr(request, "user") else []}
