from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from apps.accounts.models import ApiToken, RoleBinding, ServiceAccount
from apps.accounts.services import first_contact_config
from apps.accounts.tests.conftest import authenticate_sync, bearer


def test_create_api_token_creates_the_service_account_and_prints_only_the_token(roles, capsys):
    # when the command runs for an unknown name
    call_command("create_api_token", "--user", "deploy-bot", "--role", "operator", "--expires", "7")
    out = capsys.readouterr().out
    # then exactly one line, the token, is printed, and it authenticates the new account with its role
    token = out.strip()
    assert out == token + "\n"
    account = ServiceAccount.objects.get(name="deploy-bot")
    assert RoleBinding.objects.filter(service_account=account, role__name="operator").exists()
    principal = authenticate_sync(bearer(token))
    assert (principal.id, principal.roles) == (f"service:{account.pk}", frozenset({"operator"}))
    assert ApiToken.objects.get(service_account=account).expires_at is not None


def test_create_api_token_reuses_an_existing_account(roles, capsys):
    call_command("create_api_token", "--user", "bot", "--role", "agent")
    call_command("create_api_token", "--user", "bot", "--role", "agent")
    assert ServiceAccount.objects.filter(name="bot").count() == 1
    assert ApiToken.objects.filter(service_account__name="bot").count() == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--user", "bot", "--role", "wizard"], "--role: no role named 'wizard'"),
        (["--user", "bot", "--role", "agent", "--expires", "0"], "--expires: give a positive number"),
        (["--user", "Bad Name!", "--role", "agent"], "--user 'Bad Name!'"),
    ],
)
def test_create_api_token_explains_bad_input(roles, argv, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_api_token", *argv)


def test_first_contact_config_is_a_working_mcp_json(roles, django_user_model):
    # given the first admin
    django_user_model.objects.create_superuser("admin", "admin@localhost", "a-long-password-1")
    # when the config is produced
    config = first_contact_config("http://127.0.0.1:8000/")
    # then it points at /mcp with a bearer token that authenticates as the admin
    server = config["mcpServers"]["mcpplat"]
    assert server["url"] == "http://127.0.0.1:8000/mcp"
    assert server["type"] == "http"
    principal = authenticate_sync({"authorization": server["headers"]["Authorization"]})
    assert "admin" in principal.roles


def test_account_changes_are_audited_after_commit(roles, django_capture_on_commit_callbacks):
    from apps.accounts.services import api_token_create, service_account_ensure
    from apps.audit.models import AuditEvent

    # when a service account and a token are created
    with django_capture_on_commit_callbacks(execute=True):
        account = service_account_ensure(name="audited-bot", roles=["viewer"])
        issued = api_token_create(name="ci", service_account=account)
    # then each change is in the audit trail, naming the token by its prefix only
    events = list(AuditEvent.objects.filter(method__startswith="accounts.").order_by("-sequence")[:3])
    assert [e.method for e in events] == [
        "accounts.api_token_create",
        "accounts.role_bind",
        "accounts.service_account_create",
    ]
    assert issued.token.prefix in events[0].detail
    assert issued.value not in events[0].detail


def test_audit_digest_command_signs_and_verifies(db, capsys):
    from apps.audit.writer import AuditRecord, audit_record_sync

    audit_record_sync(AuditRecord(method="tools/list", outcome="ok"))
    call_command("audit_digest")
    assert "signed audit head #" in capsys.readouterr().out
    call_command("audit_digest", "--verify")
    assert "audit digests ok" in capsys.readouterr().out


def test_create_api_token_for_an_existing_user_binds_the_role_to_that_user(roles, django_user_model, capsys):
    dave = django_user_model.objects.create_user("dave", "dave@example.com", "a-long-password-1")
    call_command("create_api_token", "--user", "dave", "--role", "support")
    principal = authenticate_sync(bearer(capsys.readouterr().out.strip()))
    assert (principal.id, principal.roles) == (f"user:{dave.pk}", frozenset({"support"}))
    assert not ServiceAccount.objects.filter(name="dave").exists()


def test_first_contact_revokes_earlier_unused_tokens_but_keeps_used_ones(roles, django_user_model):
    from django.utils import timezone

    from apps.accounts.models import ApiToken
    from apps.accounts.services import FIRST_CONTACT_TOKEN_NAME

    # given two earlier `make run`s: one token an agent uses, one nobody used
    django_user_model.objects.create_superuser("admin", "admin@localhost", "a-long-password-1")
    first_contact_config("http://127.0.0.1:8000")
    ApiToken.objects.filter(name=FIRST_CONTACT_TOKEN_NAME).update(last_used_at=timezone.now())
    first_contact_config("http://127.0.0.1:8000")
    # when the platform starts again
    config = first_contact_config("http://127.0.0.1:8000")
    # then the used token and the new one are live, the unused one is revoked
    live = ApiToken.objects.filter(name=FIRST_CONTACT_TOKEN_NAME, revoked_at__isnull=True)
    assert live.count() == 2
    assert live.filter(last_used_at__isnull=False).count() == 1
    assert ApiToken.objects.filter(name=FIRST_CONTACT_TOKEN_NAME, revoked_at__isnull=False).count() == 1
    assert authenticate_sync({"authorization": config["mcpServers"]["mcpplat"]["headers"]["Authorization"]})
