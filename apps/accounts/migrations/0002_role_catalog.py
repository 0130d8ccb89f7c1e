"""Seed the role catalog (admin, operator, agent, support, viewer) from apps/accounts/roles.py."""

from django.db import migrations

from apps.accounts.roles import seed_roles


def forwards(apps, schema_editor):
    seed_roles(
        apps.get_model("accounts", "Role"),
        apps.get_model("accounts", "RoleGrant"),
        apps.get_model("accounts", "RoleToolLimit"),
    )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
