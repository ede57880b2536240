"""Encryption of secrets at rest (vCenter passwords, vault keys).

Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from settings.FIELD_ENCRYPTION_KEY, which
lives apart from the database, so a copied database alone does not reveal credentials.
"""

from __future__ import annotations

import base64
import hashlib
from typing import cast, overload

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import models


class SecretUnreadable(Exception):
    """The stored secret cannot be decrypted with the current key."""


def _fernet() -> Fernet:
    digest = hashlib.sha256(settings.FIELD_ENCRYPTION_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "A stored secret cannot be decrypted: FIELD_ENCRYPTION_KEY changed since it was saved."
        ) from None


class EncryptedText(property):
    """The plain text of a secret kept encrypted in another field of the model: reading decrypts ("" when
    nothing is stored), writing encrypts ("" clears it). A property, so Model(secret=...) works as well."""

    def __init__(self, stored_in: str) -> None:
        def read(instance: models.Model) -> str:
            token = getattr(instance, stored_in)
            return decrypt(token) if token else ""

        def write(instance: models.Model, value: str) -> None:
            setattr(instance, stored_in, encrypt(value) if value else "")

        super().__init__(read, write)

    # Typed again because property's own stubs give Any for every read.
    @overload
    def __get__(self, instance: None, owner: type | None = None, /) -> EncryptedText: ...
    @overload
    def __get__(self, instance: models.Model, owner: type | None = None, /) -> str: ...
    def __get__(self, instance: models.Model | None, owner: type | None = None, /) -> EncryptedText | str:
        return cast("EncryptedText | str", super().__get__(instance, owner))

    def __set__(self, instance: models.Model, value: str, /) -> None:
        super().__set__(instance, value)
