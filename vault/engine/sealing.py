"""Client-side encryption of what goes to the vault: AES-256-GCM, with chunk names that hide digests.

The administrator holds one 256-bit vault key (shown once, as text, when encryption is turned on).
Two sub-keys are derived from it with HKDF-SHA256: one encrypts blobs, one names chunks. An
encrypted vault names a chunk by HMAC-SHA256(name key, plaintext digest), so a reader of the
storage account cannot test whether a known file (hence a known chunk digest) is in a backup, and
equal chunks still deduplicate. Each blob is sealed as

    b"\\x01" | 12-byte random nonce | AES-256-GCM ciphertext and tag

with the blob's name as associated data, so a blob moved under another name does not decrypt.
Without the key nothing in the vault can be read: a lost key means lost backups.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_SIZE = 32
NONCE_SIZE = 12
SEALED_V1 = b"\x01"
OVERHEAD = 1 + NONCE_SIZE + 16  # version byte, nonce, GCM tag
KEY_PREFIX = "vmbk1:"


class SealError(Exception):
    """A blob does not decrypt with this key (wrong key, or the blob was altered)."""


def generate_key() -> str:
    """A new vault key, as the text an administrator stores (password manager, printed in a safe)."""
    return KEY_PREFIX + base64.urlsafe_b64encode(os.urandom(KEY_SIZE)).decode().rstrip("=")


def parse_key(text: str) -> bytes:
    """The 32 key bytes from `generate_key()` text; ValueError with a plain message otherwise."""
    value = text.strip()
    if not value.startswith(KEY_PREFIX):
        raise ValueError(f"a vault key starts with {KEY_PREFIX!r}")
    body = value[len(KEY_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("the vault key is not valid base64") from None
    if len(raw) != KEY_SIZE:
        raise ValueError(f"a vault key holds {KEY_SIZE} bytes, this one {len(raw)}")
    return raw


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=b"vmbackup vault " + purpose).derive(key)


class Sealer:
    """Names and seals blobs for one vault. `Sealer(None)` is the unencrypted identity."""

    def __init__(self, key: bytes | None) -> None:
        if key is not None and len(key) != KEY_SIZE:
            raise ValueError(f"vault key must be {KEY_SIZE} bytes")
        self.encrypted = key is not None
        self._name_key = _derive(key, b"chunk names") if key else b""
        self._aead = AESGCM(_derive(key, b"blob data")) if key else None
        self.key_check = hmac.new(self._name_key, b"key check", hashlib.sha256).hexdigest() if key else None

    def chunk_name(self, digest: bytes) -> str:
        """The blob name of a chunk: its digest in clear, or a keyed hash of it when encrypted."""
        name = hmac.new(self._name_key, digest, hashlib.sha256).hexdigest() if self.encrypted else digest.hex()
        return f"chunks/{name[:4]}/{name}"

    def seal(self, data: bytes | memoryview, name: str) -> bytes | memoryview:
        if self._aead is None:
            return data
        nonce = os.urandom(NONCE_SIZE)
        return SEALED_V1 + nonce + self._aead.encrypt(nonce, bytes(data), name.encode())

    def unseal(self, blob: bytes, name: str) -> bytes:
        if self._aead is None:
            return blob
        if len(blob) < OVERHEAD or blob[:1] != SEALED_V1:
            raise SealError(f"{name} is not an encrypted vault blob")
        try:
            return self._aead.decrypt(blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :], name.encode())
        except InvalidTag:
            raise SealError(f"{name} does not decrypt with this vault key (wrong key, or altered)") from None

    def sealed_size(self, size: int) -> int:
        return size + OVERHEAD if self.encrypted else size
