from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        from accounts.roles import sync_role_groups

        # Roles are data (Django groups), kept in step with the code after every migrate. Not
        # limited to this app's signal: other apps' permissions are created after ours.
        post_migrate.connect(sync_role_groups, dispatch_uid="accounts.sync_role_groups")
