from __future__ import annotations

from django.conf import settings
from django.db import models


class Restore(models.Model):
    """One restore request (files or a whole VM): who asked for what, and how it went."""

    class Kind(models.TextChoices):
        FILES = "files", "Files and folders"
        VM = "vm", "Whole VM"

    created = models.DateTimeField(auto_now_add=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    vm_label = models.CharField(max_length=255)
    paths = models.JSONField(default=list, blank=True)
    bytes_restored = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-created"]
        permissions = [
            ("browse_recoverypoints", "Can browse recovery points"),
            ("restore_files", "Can download files and folders from recovery points"),
            ("restore_vms", "Can restore whole VMs, including over the original"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} from {self.vm_label}"
