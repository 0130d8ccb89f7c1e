from apps.accounts.principal import Principal


def test_grants_match_exact_names_and_patterns():
    # given a principal granted one tool and one capability
    p = Principal(
        id="user:1", kind="user", name="a", identity_source="api_token", grants=frozenset({"platform.whoami", "task.*"})
    )
    # then
    assert p.can_call("platform.whoami")
    assert p.can_call("task.create")
    assert not p.can_call("sandbox.exec")
    assert not p.can_call("taskx")


def test_round_trips_through_a_dict():
    p = Principal(id="service:7", kind="service", name="bot", identity_source="api_token", roles=frozenset({"agent"}))
    assert Principal.from_dict(p.to_dict()) == p
