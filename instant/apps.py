from django.apps import AppConfig


class InstantConfig(AppConfig):
    name = "instant"
    verbose_name = "Instant VM recovery: a VM run straight from its recovery point"
