from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.identity import AuthError
from apps.accounts.models import ApiToken
from apps.accounts.services import api_token_create, api_token_revoke, api_token_rotate, service_account_ensure
from apps.accounts.tests.conftest import authenticate_sync, bearer
from apps.accounts.tokens import hash_secret, parse


@pytest.fixture
def bot(roles):
    return service_account_ensure(name="ci-bot", roles=["agent"])


def test_a_new_token_is_prefixed_and_only_its_hash_is_stored(bot):
    # when a token is issued
    issued = api_token_create(name="ci", service_account=bot)
    # then the value is mcpp_<public id>_<secret> and the row holds only sha256(secret)
    parsed = parse(issued.value)
    assert parsed is not None
    assert issued.value.startswith(f"mcpp_{issued.token.public_id}_")
    row = ApiToken.objects.get(pk=issued.token.pk)
    assert row.secret_hash == hash_secret(parsed.secret)
    assert parsed.secret not in str(row.__dict__)


def test_a_token_authenticates_its_service_account_with_the_roles_grants(bot):
    # given a token of an agent service account
    issued = api_token_create(name="ci", service_account=bot)
    # when it is presented
    principal = authenticate_sync(bearer(issued.value))
    # then the principal is the account, with the agent role's grants and limits
    assert principal.id == f"service:{bot.pk}"
    assert principal.kind == "service"
    assert principal.identity_source == "api_token"
    assert principal.credential_id == issued.token.prefix
    assert principal.roles == frozenset({"agent"})
    assert principal.can_call("task.create")
    assert not principal.can_call("admin.anything")
    assert principal.rate_limit_for("task.create") == 3000
    assert principal.rate_limit_for("sandbox.create") == 30


def test_a_user_token_carries_the_users_roles_and_superuser_is_admin(roles, django_user_model):
    # given a superuser's token
    root = django_user_model.objects.create_superuser("root", "root@example.com", "a-long-password-1")
    issued = api_token_create(name="laptop", user=root)
    # when presented
    principal = authenticate_sync(bearer(issued.value))
    # then the superuser holds the admin role, which grants everything without a rate limit
    assert principal.id == f"user:{root.pk}"
    assert principal.user_id == root.pk
    assert principal.roles == frozenset({"admin"})
    assert principal.can_call("sandbox.destroy")
    assert principal.rate_limit_for("sandbox.destroy") is None


@pytest.mark.parametrize(
    ("mangle", "fragment"),
    [
        (lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"), "unknown API token"),
        (lambda v: "mcpp_zzzzzzzzzzzz_" + v.split("_", 2)[2], "unknown API token"),
        (lambda v: "mcpp_short", "malformed API token"),
        (lambda v: "nonsense", "neither an mcpplat API token"),
    ],
    ids=["wrong-secret", "unknown-id", "malformed", "not-a-token"],
)
def test_a_wrong_token_is_401_with_a_challenge(bot, mangle, fragment):
    issued = api_token_create(name="ci", service_account=bot)
    # when a mangled token is presented
    with pytest.raises(AuthError) as caught:
        authenticate_sync(bearer(mangle(issued.value)))
    # then 401 invalid_token naming the problem, with the resource-metadata challenge
    assert caught.value.status == 401
    assert fragment in caught.value.message
    assert caught.value.www_authenticate.startswith('Bearer error="invalid_token"')
    assert 'resource_metadata="http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"' in (
        caught.value.www_authenticate
    )


def test_no_credentials_is_401_without_an_error_code(db):
    with pytest.raises(AuthError) as caught:
        authenticate_sync({})
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    assert caught.value.www_authenticate == (
        'Bearer resource_metadata="http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"'
    )


def test_an_expired_token_is_refused(bot):
    # given a token whose expiry has passed
    issued = api_token_create(name="ci", service_account=bot, expires_in=timedelta(days=1))
    ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    # when presented, then 401 saying it expired
    with pytest.raises(AuthError, match="expired"):
        authenticate_sync(bearer(issued.value))


def test_a_revoked_token_is_refused_at_once_in_this_process(bot, django_capture_on_commit_callbacks):
    # given a token that has been used (and so is cached)
    issued = api_token_create(name="ci", service_account=bot)
    authenticate_sync(bearer(issued.value))
    # when it is revoked through the service
    with django_capture_on_commit_callbacks(execute=True):
        api_token_revoke(token=issued.token)
    # then it no longer works
    with pytest.raises(AuthError, match="revoked"):
        authenticate_sync(bearer(issued.value))


def test_a_verified_token_is_served_from_the_cache_until_the_ttl(bot, settings):
    # given a token verified once
    issued = api_token_create(name="ci", service_account=bot)
    first = authenticate_sync(bearer(issued.value))
    # when another process revokes it (a direct row update: this process's cache is not told)
    ApiToken.objects.filter(pk=issued.token.pk).update(revoked_at=timezone.now())
    # then this process keeps accepting it from its cache (no database read) ...
    assert authenticate_sync(bearer(issued.value)) is first
    # ... until the cache entry lapses
    from apps.accounts import identity

    identity._cache[f"Bearer {issued.value}"] = (0.0, first)
    with pytest.raises(AuthError, match="revoked"):
        authenticate_sync(bearer(issued.value))


def test_last_used_is_written_at_most_once_a_minute(bot, settings):
    settings.TOKEN_CACHE_SECONDS = 0  # every call verifies against the database
    issued = api_token_create(name="ci", service_account=bot)
    # when the token is used twice in a row
    authenticate_sync(bearer(issued.value))
    first = ApiToken.objects.get(pk=issued.token.pk).last_used_at
    authenticate_sync(bearer(issued.value))
    # then last_used_at was set once and not rewritten
    assert first is not None
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at == first
    # and an old stamp is refreshed
    ApiToken.objects.filter(pk=issued.token.pk).update(last_used_at=first - timedelta(minutes=5))
    authenticate_sync(bearer(issued.value))
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at > first - timedelta(minutes=5)


def test_rotation_issues_a_new_token_and_revokes_the_old(bot):
    issued = api_token_create(name="ci", service_account=bot, expires_in=timedelta(days=10))
    # when rotated
    rotated = api_token_rotate(token=issued.token)
    # then the new one works, the old one is revoked, and the lifetime is kept
    assert authenticate_sync(bearer(rotated.value)).id == f"service:{bot.pk}"
    with pytest.raises(AuthError, match="revoked"):
        authenticate_sync(bearer(issued.value))
    assert abs((rotated.token.expires_at - rotated.token.created_at) - timedelta(days=10)) < timedelta(seconds=1)


def test_a_deactivated_service_account_cannot_authenticate(bot):
    issued = api_token_create(name="ci", service_account=bot)
    bot.is_active = False
    bot.save(update_fields=["is_active"])
    with pytest.raises(AuthError, match="deactivated"):
        authenticate_sync(bearer(issued.value))


def test_concurrent_first_uses_of_a_token_share_one_verification(bot, django_assert_num_queries):
    import asyncio

    from asgiref.sync import async_to_sync

    from apps.accounts.identity import authenticate

    issued = api_token_create(name="ci", service_account=bot)

    async def burst() -> set[int]:
        principals = await asyncio.gather(
            *(authenticate(bearer(issued.value), client_host="127.0.0.1") for _ in range(20))
        )
        return {id(p) for p in principals}

    # when 20 requests with an uncached token arrive together
    # (token, role names, roles, their grants, their limits, last_used_at: 6 queries for one verification)
    with django_assert_num_queries(6):
        identities = async_to_sync(burst)()
    # then they all get the same principal from a single verification
    assert len(identities) == 1


def test_a_failed_credential_is_refused_from_memory_without_a_lookup(bot, django_assert_num_queries):
    # given a token value that does not exist, refused once
    unknown = bearer("mcpp_abcdefghijkl_" + "x" * 43)
    with pytest.raises(AuthError) as first:
        authenticate_sync(unknown)
    # when it is presented again
    with django_assert_num_queries(0), pytest.raises(AuthError) as again:
        authenticate_sync(unknown)
    # then the same refusal comes back without touching the database
    assert again.value.message == first.value.message
    assert again.value.status == 401


def test_an_address_that_fails_too_often_is_refused_before_verification(bot, settings, redis_client):
    # given a limit of 3 failed authentications per address and minute
    settings.MCP_AUTH_FAILURES_PER_MINUTE = 3
    if time.time() % 60 > 58:  # the count is per clock minute: do not straddle one
        time.sleep(2.5)
    good = bearer(api_token_create(name="ci", service_account=bot).value)
    for i in range(3):
        with pytest.raises(AuthError):
            authenticate_sync(bearer(f"mcpp_abcdefghijk{i}_" + "x" * 43), client_host="192.0.2.7")
    # when that address presents even a valid (not yet cached) token
    with pytest.raises(AuthError) as refused:
        authenticate_sync(good, client_host="192.0.2.7")
    # then it is refused with 429 and when to retry, while another address is served
    assert refused.value.status == 429
    assert refused.value.code == "too_many_failed_authentications"
    assert 0 < refused.value.retry_after_s <= 60
    assert authenticate_sync(good, client_host="192.0.2.8").kind == "service"


def test_a_revoked_token_is_checked_again_each_time_not_cached(bot):
    # given a token that fails because it was revoked
    issued = api_token_create(name="ci", service_account=bot)
    api_token_revoke(token=issued.token)
    with pytest.raises(AuthError):
        authenticate_sync(bearer(issued.value))
    # when staff undo the revocation
    ApiToken.objects.filter(pk=issued.token.pk).update(revoked_at=None)
    # then the next request is verified afresh and succeeds
    assert authenticate_sync(bearer(issued.value)).kind == "service"
