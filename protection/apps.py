from django.apps import AppConfig


class ProtectionConfig(AppConfig):
    name = "protection"
    verbose_name = "Protection"

    def ready(self) -> None:
        from jobs.signals import run_finalised
        from protection.receivers import free_what_finalised_runs_held

        run_finalised.connect(free_what_finalised_runs_held, dispatch_uid="protection.free_what_finalised_runs_held")
