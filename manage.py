#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""
import os
import sys

from django.db import OperationalError

from memory.infra.migration_state import missing_database


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beecatalog.settings")
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except OperationalError as exc:
        # Any command (migrate, createsuperuser, shell...) on a database that does not exist:
        # the one line of memory.infra.migration_state, as a CommandError would print it.
        missing = missing_database(exc)
        if missing is None:
            raise
        sys.stderr.write(f"CommandError: {missing}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
