# Users and groups are Django's own; roles live in accounts/roles.py.
