import pytest


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"])
def test_protected_resource_metadata_names_this_resource_and_its_issuer(client, settings, path):
    # given OAuth is configured
    settings.OAUTH_ISSUER = "https://auth.example.test"
    settings.OAUTH_REQUIRED_SCOPES = ["mcp:tools"]
    # when a client discovers the metadata
    response = client.get(path)
    # then it names the MCP resource exactly, the authorization server and the scopes
    assert response.status_code == 200
    body = response.json()
    assert body["resource"] == "http://127.0.0.1:8000/mcp"
    assert body["authorization_servers"] == ["https://auth.example.test"]
    assert body["scopes_supported"] == ["mcp:tools"]
    assert body["bearer_methods_supported"] == ["header"]
    assert response["Access-Control-Allow-Origin"] == "*"


def test_metadata_refuses_post(client):
    assert client.post("/.well-known/oauth-protected-resource").status_code == 405
