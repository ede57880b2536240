"""The identity the Vault page reads the Recovery Services vault with.

No secret is stored for it: DefaultAzureCredential finds the server's own identity (environment variables, a
managed identity, the Azure CLI login), which needs only the Backup Reader role on the vault.
"""

from __future__ import annotations

from azure.core.credentials import TokenCredential


def default_credential() -> TokenCredential:
    """A new DefaultAzureCredential; azure-identity is imported only when a panel is read, not at start-up."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()
