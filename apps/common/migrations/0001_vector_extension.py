from django.db import migrations
from pgvector.django import VectorExtension


class Migration(migrations.Migration):
    """pgvector is a platform prerequisite: created once here, used by the memory app."""

    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [VectorExtension()]
