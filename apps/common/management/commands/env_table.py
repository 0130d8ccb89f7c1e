from django.core.management.base import BaseCommand

from mcpplat import env


class Command(BaseCommand):
    help = "Print the configuration table (every environment variable) as Markdown."

    def handle(self, *args: object, **options: object) -> None:
        self.stdout.write(env.markdown_table())
