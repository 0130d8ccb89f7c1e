"""Domain policy values, parsing and per-role resolution (no browser needed)."""

from __future__ import annotations

import ipaddress

import pytest
from django.core.exceptions import ValidationError

from apps.browser.models import BrowserPolicy
from apps.browser.policy import (
    DomainPolicy,
    InternalAllowance,
    PolicyError,
    check_address,
    parse_ipv4_host,
    parse_target,
)
from apps.browser.services import policy_for
from apps.browser.tests.conftest import make_principal
from apps.gateway.registry import registry


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("169.254.43518", "169.254.169.254"),
        ("example.com", None),
        ("1.example", None),
    ],
)
def test_ipv4_hosts_are_parsed_like_a_browser(host, address):
    parsed = parse_ipv4_host(host)
    assert (str(parsed) if parsed else None) == address


def test_out_of_range_ipv4_numbers_are_invalid():
    with pytest.raises(PolicyError) as err:
        parse_target("http://256.256.256.256/")
    assert err.value.reason == "invalid_url"


def test_internal_allowance_is_exact_about_ports():
    policy = DomainPolicy.build(name="t", allow_internal=["127.0.0.1:8080", "10.0.0.0/8"])
    check_address(policy, parse_target("http://127.0.0.1:8080/"), ipaddress.ip_address("127.0.0.1"))
    check_address(policy, parse_target("http://10.9.9.9:22/"), ipaddress.ip_address("10.9.9.9"))
    with pytest.raises(PolicyError):
        check_address(policy, parse_target("http://127.0.0.1:8081/"), ipaddress.ip_address("127.0.0.1"))
    with pytest.raises(PolicyError):
        check_address(policy, parse_target("http://172.16.0.1/"), ipaddress.ip_address("172.16.0.1"))


@pytest.mark.parametrize("entry", ["nonsense", "127.0.0.1:http", "[::1]:0", "10.0.0.0/33"])
def test_bad_internal_allowances_are_refused_with_the_format(entry):
    with pytest.raises(ValueError, match=r"127\.0\.0\.1|port"):
        InternalAllowance.parse(entry)


@pytest.mark.django_db
def test_admin_validation_names_the_field():
    row = BrowserPolicy(role="agent", allow="*", allow_internal="not-an-ip")
    with pytest.raises(ValidationError) as err:
        row.full_clean()
    assert "allow_internal" in err.value.message_dict


@pytest.mark.django_db
def test_a_role_without_a_policy_row_gets_the_env_default(settings):
    settings.BROWSER_DEFAULT_DENY = ["evil.example"]
    settings.BROWSER_MAX_SESSIONS_PER_ROLE = 7
    policy = policy_for(make_principal(roles=("viewer",)))
    assert policy.name == "default:viewer"
    assert policy.deny == ("evil.example",)
    assert policy.allow_internal == ()
    assert policy.max_sessions == 7


@pytest.mark.django_db
def test_the_first_role_with_a_policy_row_applies():
    BrowserPolicy.objects.create(role="operator", allow="docs.example.com", max_sessions=2)
    policy = policy_for(make_principal(roles=("agent", "operator")))
    assert (policy.name, policy.allow, policy.max_sessions) == ("operator", ("docs.example.com",), 2)


@pytest.mark.parametrize(
    ("grants", "allowed"),
    [(frozenset(), False), (frozenset({"task.*"}), False), (frozenset({"browser.*"}), True)],
    ids=["no grants", "other capability", "browser granted"],
)
def test_browser_tools_require_their_own_permission(grants, allowed):
    from apps.accounts.principal import Principal

    who = Principal(id="user:1", kind="user", name="u", identity_source="api_token", grants=grants)
    for name in ("browser.open", "browser.act", "browser.extract", "browser.trace"):
        spec = registry.get(name)
        assert spec is not None
        assert who.can_call(spec.permission) is allowed
