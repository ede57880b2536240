from django import template

from alerts.queries import open_unacknowledged_count

register = template.Library()


@register.simple_tag
def open_alert_count() -> int:
    """Open alerts nobody acknowledged yet, for the navigation (render it only for users who may view alerts)."""
    return open_unacknowledged_count()
