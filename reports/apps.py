from django.apps import AppConfig


class ReportsConfig(AppConfig):
    """Read-only reports over the other apps' models; owns no models."""

    name = "reports"
    verbose_name = "Reports"
