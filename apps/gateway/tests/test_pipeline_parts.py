"""Rate limits, idempotency, configuration and tool settings: the pipeline's parts on real Redis and Postgres."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError

from apps.gateway import idempotency, ratelimit, selectors
from apps.gateway.config import Limit, parse_limit
from apps.gateway.models import ToolSetting
from apps.gateway.services import TOOL_SETTINGS_KEY, tool_setting_delete, tool_setting_update


async def test_token_bucket_allows_capacity_then_says_when(redis_client):
    # given a caller bucket of 3 per minute and a roomy tool bucket
    caller = ratelimit.Bucket("t:rl:caller", Limit(3, 60), "caller")
    tool = ratelimit.Bucket("t:rl:tool", Limit(100, 60), "caller+tool x")
    # when four calls come at once
    verdicts = [await ratelimit.take([caller, tool]) for _ in range(4)]
    # then three pass and the fourth names the caller bucket and a wait of about 20 s (60 s / 3)
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[3].bucket == caller
    assert 19_000 <= verdicts[3].retry_after_ms <= 20_000


async def test_refused_call_takes_no_token_from_other_buckets(redis_client):
    # given an empty tool bucket
    caller = ratelimit.Bucket("t:rl:c2", Limit(2, 60), "caller")
    tool = ratelimit.Bucket("t:rl:t2", Limit(1, 60), "caller+tool")
    assert (await ratelimit.take([caller, tool])).allowed
    # when the tool bucket refuses
    refused = await ratelimit.take([caller, tool])
    # then the caller still has its second token for another tool
    assert refused.bucket == tool
    assert (await ratelimit.take([caller])).allowed
    assert not (await ratelimit.take([caller])).allowed


async def test_idempotency_claim_replay_conflict_and_release(redis_client):
    digest = idempotency.arguments_digest("t.tool", {"a": 1, "b": [1, 2]})
    # key order does not change the digest
    assert digest == idempotency.arguments_digest("t.tool", {"b": [1, 2], "a": 1})
    assert (await idempotency.claim("p1", "k", digest)).state == "claimed"
    assert (await idempotency.claim("p1", "k", digest)).state == "running"
    await idempotency.complete("p1", "k", digest, {"content": [], "isError": False})
    replay = await idempotency.claim("p1", "k", digest)
    assert (replay.state, replay.result) == ("replay", {"content": [], "isError": False})
    other = idempotency.arguments_digest("t.tool", {"a": 2})
    assert (await idempotency.claim("p1", "k", other)).state == "conflict"
    # keys are per caller
    assert (await idempotency.claim("p2", "k", other)).state == "claimed"
    await idempotency.release("p2", "k")
    assert (await idempotency.claim("p2", "k", digest)).state == "claimed"
    assert 0 < redis_client.ttl("mcpplat:mcp:idem:p2:k") <= 86400


@pytest.mark.parametrize("value", ["", "ten", "0/60", "5/0", "5/x", "-1/60"])
def test_bad_rate_limit_names_the_variable(value):
    with pytest.raises(ImproperlyConfigured, match="MCP_RATE_LIMIT_TOOL"):
        parse_limit(value, name="MCP_RATE_LIMIT_TOOL")


def test_rate_limit_parses():
    assert parse_limit("30/60", name="x") == Limit(30, 60.0)
    assert parse_limit("5", name="x") == Limit(5, 1.0)


def test_wildcard_cors_origin_is_refused(settings):
    from apps.gateway import config

    settings.MCP_CORS_ORIGINS = ["*"]
    config.config.cache_clear()
    try:
        with pytest.raises(ImproperlyConfigured, match="MCP_CORS_ORIGINS"):
            config.config()
    finally:
        config.config.cache_clear()


@pytest.mark.django_db(transaction=True)
async def test_staff_tool_setting_reaches_the_hot_path_through_redis(redis_client):
    from asgiref.sync import sync_to_async

    # when staff disable platform.whoami and limit it
    await sync_to_async(tool_setting_update)(tool="platform.whoami", enabled=False, rate_limit="5/60")
    selectors.tool_overrides_forget()
    overrides = await selectors.tool_overrides()
    # then the gateway sees it (from the Redis mirror)
    assert overrides["platform.whoami"] == selectors.ToolOverride(enabled=False, rate_limit=Limit(5, 60.0))
    assert redis_client.hexists(TOOL_SETTINGS_KEY, "platform.whoami")
    # and when Redis loses the mirror it is rebuilt from Postgres
    redis_client.delete(TOOL_SETTINGS_KEY)
    selectors.tool_overrides_forget()
    assert (await selectors.tool_overrides())["platform.whoami"].enabled is False
    # and deleting the row restores the defaults
    await sync_to_async(tool_setting_delete)(tool="platform.whoami")
    selectors.tool_overrides_forget()
    assert "platform.whoami" not in await selectors.tool_overrides()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tool", "rate_limit", "field"),
    [("no.such.tool", "", "tool"), ("platform.whoami", "lots", "rate_limit")],
)
def test_tool_setting_rejects_bad_input_naming_the_field(tool, rate_limit, field):
    with pytest.raises(ValidationError) as failed:
        tool_setting_update(tool=tool, enabled=True, rate_limit=rate_limit)
    assert field in failed.value.message_dict
    assert not ToolSetting.objects.exists()
