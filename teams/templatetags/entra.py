"""`{% load entra %}{% entra_sign_in as on %}`: whether the login page offers "Sign in with Microsoft"."""

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def entra_sign_in() -> bool:
    return getattr(settings, "ENTRA_ID", None) is not None
