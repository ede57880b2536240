from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # Each app's jobs.py registers its job kinds; web, workers and the scheduler all see them.
        autodiscover_modules("jobs")
