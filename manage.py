#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line
    from django.db import OperationalError, ProgrammingError

    try:
        execute_from_command_line(sys.argv)
    except (OperationalError, ProgrammingError):
        # A missing table on a database never migrated (SQLite: OperationalError, PostgreSQL:
        # ProgrammingError) gets one sentence here, once, rather than a traceback from every command.
        sentence = None if sys.argv[1:2] == ["migrate"] else _unmigrated_sentence()
        if sentence is None:
            raise
        sys.stderr.write(f"{sentence}\n")
        raise SystemExit(1) from None


def _unmigrated_sentence() -> str | None:
    from config.database import unmigrated_sentence

    return unmigrated_sentence()


if __name__ == "__main__":
    main()
