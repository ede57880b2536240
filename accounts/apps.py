from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        from accounts.roles import sync_role_groups

        # Roles are data (Django groups), kept in step with the code after every migrate.
        post_migrate.connect(sync_role_groups, sender=self)
