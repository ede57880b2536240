from django.apps import AppConfig


class RestoreTestsConfig(AppConfig):
    name = "restore_tests"
    verbose_name = "Restore tests"
