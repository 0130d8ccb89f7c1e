from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "tests.e2e.demo"
    label = "e2e_demo"
