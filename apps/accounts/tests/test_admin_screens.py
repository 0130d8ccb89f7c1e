from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django_otp import DEVICE_ID_SESSION_KEY

from apps.accounts.models import ApiToken, Role
from apps.accounts.otp import otp_device_create
from apps.accounts.services import api_token_create, service_account_ensure
from apps.accounts.tests.conftest import authenticate_sync, bearer


@pytest.fixture
def staff_client(client, roles, django_user_model):
    """A superuser logged in with a verified OTP device (what OTPAdminSite requires)."""
    user = django_user_model.objects.create_superuser("boss", "boss@example.com", "a-long-password-1")
    otp_device_create(user=user, totp=True)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = user.totpdevice_set.get().persistent_id
    session.save()
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/admin/accounts/role/",
        "/admin/accounts/rolebinding/",
        "/admin/accounts/serviceaccount/",
        "/admin/accounts/apitoken/",
        "/admin/accounts/apitoken/?status=usable",
        "/admin/accounts/apitoken/add/",
        "/admin/audit/auditevent/",
        "/admin/audit/auditdigest/",
        "/admin/auth/user/",
        "/admin/auth/group/add/",
    ],
)
def test_admin_screens_open(staff_client, path):
    service_account_ensure(name="bot", roles=["agent"])
    assert staff_client.get(path).status_code == 200


def test_a_role_page_shows_its_grants_as_rows(staff_client):
    agent = Role.objects.get(name="agent")
    body = staff_client.get(f"/admin/accounts/role/{agent.pk}/change/").content.decode()
    assert 'value="task.*"' in body
    assert 'value="sandbox.create"' in body  # its per-tool limit


def test_adding_a_token_shows_it_once_and_it_works(staff_client):
    # given a service account
    bot = service_account_ensure(name="bot", roles=["agent"])
    # when staff add a token in the admin
    response = staff_client.post(
        "/admin/accounts/apitoken/add/",
        {"name": "from admin", "service_account": bot.pk, "user": "", "expires_in_days": "30"},
        follow=True,
    )
    # then the page shows the token once, and that token authenticates the account
    shown = [str(m) for m in get_messages(response.wsgi_request)] or [response.content.decode()]
    text = " ".join(shown)
    start = text.index("mcpp_")
    value = text[start : text.index("<", start)]
    assert authenticate_sync(bearer(value)).id == f"service:{bot.pk}"
    assert ApiToken.objects.get(service_account=bot).expires_at is not None


def test_the_revoke_action_revokes(staff_client):
    bot = service_account_ensure(name="bot", roles=["agent"])
    issued = api_token_create(name="x", service_account=bot)
    staff_client.post("/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [issued.token.pk]})
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is not None


def test_a_user_page_lists_the_users_roles_and_tokens(staff_client, django_user_model):
    from apps.accounts.services import role_bind

    carol = django_user_model.objects.create_user("carol", "carol@example.com", "a-long-password-1")
    role_bind(role="support", user=carol)
    issued = api_token_create(name="carol laptop", user=carol)
    body = staff_client.get(f"/admin/auth/user/{carol.pk}/change/").content.decode()
    assert "carol laptop" in body
    assert issued.token.prefix in body
    assert "selected>support</option>" in body


def test_a_role_can_be_bound_from_the_service_account_page(staff_client):
    from apps.accounts.models import RoleBinding, ServiceAccount

    # given a service account with one role
    bot = service_account_ensure(name="bot", roles=["agent"])
    viewer = Role.objects.get(name="viewer")
    binding = RoleBinding.objects.get(service_account=bot)
    prefix = "role_bindings"
    page = staff_client.get(f"/admin/accounts/serviceaccount/{bot.pk}/change/").content.decode()
    assert f'name="{prefix}-0-role"' in page
    # when staff add a second role in the page's roles inline
    form = {
        "name": "bot", "description": "", "is_active": "on",
        f"{prefix}-TOTAL_FORMS": "2", f"{prefix}-INITIAL_FORMS": "1",
        f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000",
        f"{prefix}-0-id": str(binding.pk), f"{prefix}-0-service_account": str(bot.pk),
        f"{prefix}-0-role": str(binding.role_id),
        f"{prefix}-1-id": "", f"{prefix}-1-service_account": str(bot.pk), f"{prefix}-1-role": str(viewer.pk),
        "api_tokens-TOTAL_FORMS": "0", "api_tokens-INITIAL_FORMS": "0",
        "api_tokens-MIN_NUM_FORMS": "0", "api_tokens-MAX_NUM_FORMS": "1000",
    }  # fmt: skip
    response = staff_client.post(f"/admin/accounts/serviceaccount/{bot.pk}/change/", form)
    # then it holds both roles
    assert response.status_code == 302, response.content.decode()[:2000]
    assert set(ServiceAccount.objects.get(pk=bot.pk).role_bindings.values_list("role__name", flat=True)) == {
        "agent",
        "viewer",
    }
