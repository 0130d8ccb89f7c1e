"""Demo tools that exist only in the end-to-end settings (tests/e2e/settings.py): slow, counting, echoing."""
