"""A staff member (password + TOTP) creates two tasks and a dependency in the admin, in a real Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from apps.accounts.otp import otp_device_create
from apps.accounts.services import role_catalog_seed
from apps.tasks import services
from apps.tasks.models import Dependency, Task, TaskEvent
from apps.tasks.principals import principal_for_user
from apps.tasks.tests.test_admin import totp_code
from tests import capability

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _require_chromium() -> None:
    capability.require(
        "browser", None if CHROMIUM.exists() else f"{CHROMIUM} is missing", "run scripts/provision.d/40-chromium.sh"
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_staff_creates_tasks_and_a_dependency_in_the_admin(live_server):
    _require_chromium()
    from playwright.sync_api import sync_playwright

    # given a staff member with a TOTP device and a project (set up before the browser's event loop starts)
    role_catalog_seed()  # transactional tests start from an emptied database
    user = get_user_model().objects.create_superuser("planner", "p@example.com", "a-long-password-1")
    otp_device_create(user=user, totp=True)
    services.project_create(principal=principal_for_user(user), key="web", name="Website")
    code = totp_code(user)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page()
        page.set_default_timeout(15_000)
        # when they log in with password and TOTP code
        page.goto(f"{live_server.url}/admin/login/?next=/admin/")
        page.fill("#id_username", "planner")
        page.fill("#id_password", "a-long-password-1")
        page.click("input[type=submit]")  # django-otp lists the user's devices once the password is known
        page.select_option("#id_otp_device", label="totp")
        page.fill("#id_password", "a-long-password-1")
        page.fill("#id_otp_token", code)
        page.click("input[type=submit]")
        page.wait_for_selector("#site-name")
        assert "/admin/login/" not in page.url, page.locator("#content").inner_text()
        # and create the first task
        page.goto(f"{live_server.url}/admin/tasks/task/add/")
        page.select_option("#id_project", label="web")
        page.fill("#id_title", "Design schema")
        page.select_option("#id_priority", label="high")
        page.click("input[name=_save]")
        link = page.locator("ul.messagelist a").first.get_attribute("href") or ""
        first_id = int(re.search(r"/task/(\d+)/change/", link).group(1))
        # and a second one that depends on the first, through the dependency inline
        page.goto(f"{live_server.url}/admin/tasks/task/add/")
        page.select_option("#id_project", label="web")
        page.fill("#id_title", "Build API")
        page.fill("#id_dependency_edges-0-depends_on", str(first_id))
        page.click("input[name=_continue]")
        page.wait_for_selector("#dependency-graph")
        second_id = int(re.search(r"/task/(\d+)/change/", page.url).group(1))
        # then the task page draws the dependency and marks the second task blocked
        edge = page.locator(f'line.edge[data-task="{second_id}"][data-depends-on="{first_id}"]')
        assert edge.count() == 1
        assert page.locator(f'g.node[data-task="{second_id}"]').get_attribute("data-state") == "blocked"
        assert page.locator(f'g.node[data-task="{first_id}"]').get_attribute("data-state") == "ready"
        history = page.locator("#events-group").inner_text()
        browser.close()

    assert "dependency_added" in history or "dependency added" in history
    assert list(Dependency.objects.values_list("task_id", "depends_on_id")) == [(second_id, first_id)]
    assert Task.objects.get(pk=first_id).priority == 3
    actors = set(TaskEvent.objects.filter(task_id__in=[first_id, second_id]).values_list("actor", flat=True))
    assert actors == {f"user:{user.pk}"}
