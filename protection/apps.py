from django.apps import AppConfig


class ProtectionConfig(AppConfig):
    name = "protection"
    verbose_name = "Protection"

    def ready(self) -> None:
        from inventory.signals import vms_changed
        from jobs.signals import run_finalised
        from protection.receivers import free_what_finalised_runs_held, refresh_membership_of_changed_vms

        run_finalised.connect(free_what_finalised_runs_held, dispatch_uid="protection.free_what_finalised_runs_held")
        vms_changed.connect(
            refresh_membership_of_changed_vms, dispatch_uid="protection.refresh_membership_of_changed_vms"
        )
