#!/usr/bin/env python
"""Django's command-line utility for mcpplat."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpplat.settings.base")
    from django.core.exceptions import ImproperlyConfigured

    try:
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # Configuration mistakes are the user's to fix: one line naming the setting, not a traceback.
        sys.stderr.write(f"mcpplat: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
