from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    name = "recovery"
    verbose_name = "Recovery"

    def ready(self) -> None:
        # The catalog's job kinds (jobs' autodiscovery imports recovery.jobs only) and its receivers.
        from recovery.catalog import jobs, receivers  # noqa: F401
