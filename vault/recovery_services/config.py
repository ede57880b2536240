"""Which Recovery Services vault to read: its subscription, resource group and name, checked against Azure's rules."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Azure's naming rules (Microsoft.Resources and Microsoft.RecoveryServices).
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_RESOURCE_GROUP = re.compile(r"^[-\w.()]{1,90}$")  # letters and digits (Unicode), - _ . ( ); not ending in "."
_VAULT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,49}$")  # 2-50, starts with a letter, letters digits hyphens


@dataclass(frozen=True)
class RecoveryServicesConfig:
    """Which vault to read. Holds no secret: the credential is passed separately to `fetch_status`."""

    subscription_id: str
    resource_group: str
    vault_name: str

    def __post_init__(self) -> None:
        subscription = str(self.subscription_id or "").strip()
        group = str(self.resource_group or "").strip()
        vault = str(self.vault_name or "").strip()
        if not _GUID.match(subscription):
            raise ValueError(
                "The subscription ID must be a GUID such as 00000000-0000-0000-0000-000000000000 "
                "(Azure portal → Subscriptions)."
            )
        if not _RESOURCE_GROUP.match(group) or group.endswith("."):
            raise ValueError(
                "The resource group name must be 1 to 90 letters, digits, hyphens, underscores, periods or "
                "parentheses, and may not end with a period."
            )
        if not _VAULT_NAME.match(vault):
            raise ValueError("The vault name must be 2 to 50 letters, digits or hyphens, starting with a letter.")
        object.__setattr__(self, "subscription_id", subscription.lower())
        object.__setattr__(self, "resource_group", group)
        object.__setattr__(self, "vault_name", vault)

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.RecoveryServices/vaults/{self.vault_name}"
        )
