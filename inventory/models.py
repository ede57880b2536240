from __future__ import annotations

from django.db import models

from lib import crypto


class VCenter(models.Model):
    """A vCenter connection. The password is stored encrypted and is never rendered back."""

    class Protocol(models.TextChoices):
        HTTPS = "https", "HTTPS"
        HTTP = "http", "HTTP (simulator only)"

    name = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=443)
    protocol = models.CharField(max_length=5, choices=Protocol.choices, default=Protocol.HTTPS)
    username = models.CharField(max_length=150)
    password_encrypted = models.TextField(editable=False)
    verify_tls = models.BooleanField(
        default=True, help_text="Off only for a simulator or a lab with a self-signed certificate."
    )
    thumbprint = models.CharField(max_length=95, blank=True, help_text="Pinned SHA-256 certificate thumbprint")
    is_simulator = models.BooleanField(default=False, help_text="The demo simulator that `make run` starts")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "vCenter"

    def __str__(self) -> str:
        return self.name

    @property
    def password(self) -> str:
        return crypto.decrypt(self.password_encrypted)

    @password.setter
    def password(self, value: str) -> None:
        self.password_encrypted = crypto.encrypt(value)

    @property
    def insecure(self) -> bool:
        return self.protocol == self.Protocol.HTTP or not self.verify_tls


class VirtualMachine(models.Model):
    """A VM, identified by its vCenter and instance UUID, never by name (filled by the sync, issue 3)."""

    vcenter = models.ForeignKey(VCenter, on_delete=models.PROTECT, related_name="vms")
    instance_uuid = models.CharField(max_length=64)
    name = models.CharField(max_length=255)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["vcenter", "instance_uuid"], name="vm_identity_per_vcenter")]

    def __str__(self) -> str:
        return self.name
