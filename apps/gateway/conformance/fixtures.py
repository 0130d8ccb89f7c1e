"""The fixed-name tools, resources and prompts the official conformance suite calls.

Imported only under the conformance settings profile (apps.gateway.apps checks the setting). The tools go through
the same pipeline as every other tool; resources, prompts and completion exist only here.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from django.conf import settings
from django.core import signing
from django.core.exceptions import ImproperlyConfigured

from apps.gateway import errors, protocol, sessions
from apps.gateway.errors import RpcError
from apps.gateway.protocol import Call, GatewayToolContext, RawResult
from apps.gateway.registry import Annotations, ToolContext, tool

if not settings.MCP_CONFORMANCE_FIXTURES:
    raise ImproperlyConfigured("conformance fixtures load only under apps.gateway.conformance.settings")

CAPABILITIES: dict[str, dict[str, Any]] = {
    # resources/subscribe exists on the handshake wire only (2026-07-28 replaced it by subscriptions/listen).
    "legacy": {
        "resources": {"subscribe": True, "listChanged": False},
        "prompts": {"listChanged": False},
        "completions": {},
    },
    "modern": {"resources": {}, "prompts": {}, "completions": {}},
}
IMAGE = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
AUDIO = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
NO_ARGS = {"type": "object", "properties": {}}
FIXTURE = Annotations(read_only=True, destructive=False, idempotent=True, open_world=False)
_SALT = "mcpplat.conformance.request-state"


def _text(text: str) -> RawResult:
    return RawResult({"content": [{"type": "text", "text": text}], "isError": False})


def _call(ctx: ToolContext) -> Call:
    assert isinstance(ctx, GatewayToolContext)  # noqa: S101 - fixtures run only in the gateway
    return ctx.call


def fixture(name: str, description: str, input_schema: dict[str, Any] | None = None) -> Any:
    return tool(
        name=name,
        title=name,
        description=description,
        input_schema=input_schema or NO_ARGS,
        permission=f"test.{name}",
        annotations=FIXTURE,
    )


@fixture("test_simple_text", "Tests simple text content response")
async def simple_text(ctx: ToolContext, args: dict[str, Any]) -> Any:
    return _text("This is a simple text response for testing.")


@fixture("test_image_content", "Tests image content response")
async def image_content(ctx: ToolContext, args: dict[str, Any]) -> Any:
    return RawResult({"content": [{"type": "image", "data": IMAGE, "mimeType": "image/png"}]})


@fixture("test_audio_content", "Tests audio content response")
async def audio_content(ctx: ToolContext, args: dict[str, Any]) -> Any:
    return RawResult({"content": [{"type": "audio", "data": AUDIO, "mimeType": "audio/wav"}]})


@fixture("test_embedded_resource", "Tests embedded resource content response")
async def embedded_resource(ctx: ToolContext, args: dict[str, Any]) -> Any:
    resource = {
        "uri": "test://embedded-resource",
        "mimeType": "text/plain",
        "text": "This is an embedded resource content.",
    }
    return RawResult({"content": [{"type": "resource", "resource": resource}]})


@fixture("test_multiple_content_types", "Tests response with multiple content types (text, image, resource)")
async def multiple_content(ctx: ToolContext, args: dict[str, Any]) -> Any:
    resource = {
        "uri": "test://mixed-content-resource",
        "mimeType": "application/json",
        "text": orjson.dumps({"test": "data", "value": 123}).decode(),
    }
    return RawResult(
        {
            "content": [
                {"type": "text", "text": "Multiple content types test:"},
                {"type": "image", "data": IMAGE, "mimeType": "image/png"},
                {"type": "resource", "resource": resource},
            ]
        }
    )


@fixture("test_tool_with_logging", "Tests tool that emits log messages during execution")
async def with_logging(ctx: ToolContext, args: dict[str, Any]) -> Any:
    call = _call(ctx)
    for i, text in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
        if call.emit is not None:
            await call.emit(
                {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": text}}
            )
        if i < 2:
            await asyncio.sleep(0.05)
    return _text("Tool with logging executed successfully")


@fixture("test_tool_with_progress", "Tests tool that reports progress notifications")
async def with_progress(ctx: ToolContext, args: dict[str, Any]) -> Any:
    for step in (0, 50, 100):
        await ctx.progress(step, 100, f"Completed step {step} of 100")
        if step < 100:
            await asyncio.sleep(0.05)
    return _text(str(_call(ctx).progress_token))


@fixture("test_error_handling", "Tests error response handling")
async def error_handling(ctx: ToolContext, args: dict[str, Any]) -> Any:
    return RawResult(
        {
            "content": [{"type": "text", "text": "This tool intentionally returns an error for testing"}],
            "isError": True,
        }
    )


@fixture(
    "test_sampling",
    "Tests server-initiated sampling (LLM completion request)",
    {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
)
async def sampling(ctx: ToolContext, args: dict[str, Any]) -> Any:
    assert isinstance(ctx, GatewayToolContext)  # noqa: S101
    result = await ctx.request_client(
        "sampling/createMessage",
        {"messages": [{"role": "user", "content": {"type": "text", "text": args["prompt"]}}], "maxTokens": 100},
    )
    content = result.get("content") or {}
    return _text(f"LLM response: {content.get('text', 'No response')}")


async def _elicit(ctx: ToolContext, params: dict[str, Any], prefix: str) -> Any:
    assert isinstance(ctx, GatewayToolContext)  # noqa: S101
    result = await ctx.request_client("elicitation/create", {"mode": "form", **params})
    content = orjson.dumps(result.get("content") or {}).decode()
    return _text(f"{prefix}: action={result.get('action')}, content={content}")


@fixture(
    "test_elicitation",
    "Tests server-initiated elicitation (user input request)",
    {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
)
async def elicitation(ctx: ToolContext, args: dict[str, Any]) -> Any:
    schema = {
        "type": "object",
        "properties": {"response": {"type": "string", "description": "User's response"}},
        "required": ["response"],
    }
    return await _elicit(ctx, {"message": args["message"], "requestedSchema": schema}, "User response")


@fixture("test_elicitation_sep1034_defaults", "Tests elicitation with default values per SEP-1034")
async def elicitation_defaults(ctx: ToolContext, args: dict[str, Any]) -> Any:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
        "required": [],
    }
    message = "Please review and update the form fields with defaults"
    return await _elicit(ctx, {"message": message, "requestedSchema": schema}, "Elicitation completed")


@fixture("test_elicitation_sep1330_enums", "Tests elicitation with enum schema improvements per SEP-1330")
async def elicitation_enums(ctx: ToolContext, args: dict[str, Any]) -> Any:
    titled = [
        {"const": f"value{i}", "title": t} for i, t in enumerate(("First Option", "Second Option", "Third Option"), 1)
    ]
    choices = [
        {"const": f"value{i}", "title": t} for i, t in enumerate(("First Choice", "Second Choice", "Third Choice"), 1)
    ]
    options = ["option1", "option2", "option3"]
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "description": "Select one option", "enum": options},
            "titledSingle": {"type": "string", "description": "Select one option with titles", "oneOf": titled},
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "string", "enum": options},
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {"anyOf": choices},
            },
        },
        "required": [],
    }
    message = "Please select options from the enum fields"
    return await _elicit(ctx, {"message": message, "requestedSchema": schema}, "Elicitation completed")


@fixture("test_missing_capability", "Needs the client's sampling capability (2026-07-28: -32021 without it)")
async def missing_capability(ctx: ToolContext, args: dict[str, Any]) -> Any:
    call = _call(ctx)
    if call.era == "modern" and "sampling" not in call.client_capabilities:
        raise RpcError(
            errors.MISSING_CLIENT_CAPABILITY,
            "test_missing_capability needs the client capability 'sampling'; declare it in _meta",
            {"requiredCapabilities": {"sampling": {}}},
        )
    return _text("the client declared sampling")


@fixture(
    "json_schema_2020_12_tool",
    "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
    {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}
        },
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": False,
    },
)
async def json_schema_tool(ctx: ToolContext, args: dict[str, Any]) -> Any:
    return _text(f"JSON Schema 2020-12 tool called with: {orjson.dumps(args).decode()}")


@fixture("test_logging_tool", "Logs at info and debug (sent only when the request asked for a log level)")
async def logging_tool(ctx: ToolContext, args: dict[str, Any]) -> Any:
    assert isinstance(ctx, GatewayToolContext)  # noqa: S101
    await ctx.log("info", "test_logging_tool ran", "conformance")
    await ctx.log("debug", "debug detail", "conformance")
    return _text("logged")


@fixture("test_streaming_elicitation", "Needs user input: asks through an InputRequiredResult, never a request")
async def streaming_elicitation(ctx: ToolContext, args: dict[str, Any]) -> Any:
    call = _call(ctx)
    answer = _responses(call).get("user_name")
    if answer:
        return _text(f"Hello, {_field(answer, 'name')}!")
    if call.emit is not None and call.progress_token is not None:
        await ctx.progress(1, 2, "asking for a name")
    return _ask({"user_name": _elicit_request("What is your name?", "name")})


# ------------------------------------------------------------------ MRTR (2026-07-28 InputRequiredResult)


def _state(data: dict[str, Any], call: Call) -> str:
    return signing.dumps({**data, "p": call.principal.id, "t": call.tool}, salt=_SALT, compress=True)


def _unstate(call: Call) -> dict[str, Any] | None:
    token = call.params.get("requestState")
    if token is None:
        return None
    try:
        data = signing.loads(token, salt=_SALT, max_age=600)
    except (signing.BadSignature, TypeError):
        raise RpcError(
            errors.INVALID_PARAMS, "requestState failed its integrity check (tampered or expired); start over"
        ) from None
    if data.get("p") != call.principal.id or data.get("t") != call.tool:
        raise RpcError(errors.INVALID_PARAMS, "requestState belongs to another caller or tool; start over")
    return data


def _responses(call: Call) -> dict[str, Any]:
    value = call.params.get("inputResponses")
    return value if isinstance(value, dict) else {}


def _field(response: Any, name: str) -> str:
    content = response.get("content") if isinstance(response, dict) else None
    value = content.get(name) if isinstance(content, dict) else None
    return value if isinstance(value, str) else "unknown"


def _ask(requests: dict[str, Any], state: str | None = None) -> RawResult:
    result: dict[str, Any] = {"resultType": "input_required", "inputRequests": requests}
    if state is not None:
        result["requestState"] = state
    return RawResult(result)


def _elicit_request(message: str, field: str, kind: str = "string") -> dict[str, Any]:
    return {
        "method": "elicitation/create",
        "params": {
            "message": message,
            "requestedSchema": {"type": "object", "properties": {field: {"type": kind}}, "required": [field]},
        },
    }


SAMPLE = {
    "method": "sampling/createMessage",
    "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": "What is the capital of France?"}}],
        "maxTokens": 100,
    },
}
ROOTS = {"method": "roots/list", "params": {}}


@fixture("test_input_required_result_elicitation", "Test tool: InputRequiredResult with an elicitation request")
async def irr_elicitation(ctx: ToolContext, args: dict[str, Any]) -> Any:
    answer = _responses(_call(ctx)).get("user_name")
    if answer:
        return _text(f"Hello, {_field(answer, 'name')}!")
    return _ask({"user_name": _elicit_request("What is your name?", "name")})


@fixture("test_input_required_result_sampling", "Test tool: InputRequiredResult with a sampling request")
async def irr_sampling(ctx: ToolContext, args: dict[str, Any]) -> Any:
    answer = _responses(_call(ctx)).get("sample_request")
    if isinstance(answer, dict):
        found = answer.get("content")
        content = found if isinstance(found, dict) else {}
        return _text(f"Sampling result: {content.get('text', 'no response')}")
    return _ask({"sample_request": SAMPLE})


@fixture("test_input_required_result_list_roots", "Test tool: InputRequiredResult with a roots/list request")
async def irr_roots(ctx: ToolContext, args: dict[str, Any]) -> Any:
    answer = _responses(_call(ctx)).get("roots_request")
    if isinstance(answer, dict):
        found = answer.get("roots")
        roots = found if isinstance(found, list) else []
        return _text(f"Found {len(roots)} root(s)")
    return _ask({"roots_request": ROOTS})


@fixture("test_input_required_result_request_state", "Test tool: InputRequiredResult with requestState")
async def irr_request_state(ctx: ToolContext, args: dict[str, Any]) -> Any:
    call = _call(ctx)
    state = _unstate(call)
    answer = _responses(call).get("confirm")
    content = answer.get("content") if isinstance(answer, dict) else None
    if state and state.get("kind") == "request-state" and isinstance(content, dict) and content.get("ok") is True:
        return _text("state-ok: requestState validated")
    return _ask(
        {"confirm": _elicit_request("Please confirm", "ok", "boolean")}, _state({"kind": "request-state"}, call)
    )


@fixture("test_input_required_result_tampered_state", "Test tool: rejects a tampered requestState")
async def irr_tampered(ctx: ToolContext, args: dict[str, Any]) -> Any:
    call = _call(ctx)
    state = _unstate(call)
    if state and state.get("kind") == "tamper-check" and _responses(call):
        return _text("state-ok: requestState verified")
    return _ask({"confirm": _elicit_request("Please confirm", "ok", "boolean")}, _state({"kind": "tamper-check"}, call))


@fixture("test_input_required_result_multiple_inputs", "Test tool: several input requests at once")
async def irr_multiple(ctx: ToolContext, args: dict[str, Any]) -> Any:
    call = _call(ctx)
    state = _unstate(call)
    answers = _responses(call)
    if state and state.get("kind") == "multiple-inputs" and {"user_name", "greeting", "client_roots"} <= set(answers):
        greeting = answers["greeting"].get("content", {}) if isinstance(answers["greeting"], dict) else {}
        roots = answers["client_roots"].get("roots", []) if isinstance(answers["client_roots"], dict) else []
        return _text(
            f"Name: {_field(answers['user_name'], 'name')}; Greeting: {greeting.get('text', 'Hello there!')}; "
            f"Roots: {len(roots)}"
        )
    greet = {
        "method": "sampling/createMessage",
        "params": {
            "messages": [{"role": "user", "content": {"type": "text", "text": "Generate a greeting"}}],
            "maxTokens": 50,
        },
    }
    return _ask(
        {"user_name": _elicit_request("What is your name?", "name"), "greeting": greet, "client_roots": ROOTS},
        _state({"kind": "multiple-inputs"}, call),
    )


@fixture("test_input_required_result_multi_round", "Test tool: InputRequiredResult across several rounds")
async def irr_multi_round(ctx: ToolContext, args: dict[str, Any]) -> Any:
    call = _call(ctx)
    state = _unstate(call)
    answers = _responses(call)
    if state and state.get("round") == 1 and answers.get("step1"):
        name = _field(answers["step1"], "name")
        return _ask(
            {"step2": _elicit_request("Step 2: What is your favorite color?", "color")},
            _state({"round": 2, "name": name}, call),
        )
    if state and state.get("round") == 2 and answers.get("step2"):
        return _text(f"Multi-round complete for {state.get('name')} who likes {_field(answers['step2'], 'color')}")
    return _ask({"step1": _elicit_request("Step 1: What is your name?", "name")}, _state({"round": 1}, call))


@fixture("test_input_required_result_capabilities", "Test tool: asks only for what the client can answer")
async def irr_capabilities(ctx: ToolContext, args: dict[str, Any]) -> Any:
    call = _call(ctx)
    caps = call.client_capabilities
    answers = _responses(call)
    if answers:
        return _text("inputs received")
    requests: dict[str, Any] = {}
    if "elicitation" in caps:
        requests["user_name"] = _elicit_request("What is your name?", "name")
    if "sampling" in caps:
        requests["sample_request"] = SAMPLE
    if "roots" in caps:
        requests["roots_request"] = ROOTS
    if not requests:
        return _text("the client declared no capability to ask through")
    return _ask(requests)


# ------------------------------------------------------------------------------- resources and prompts

RESOURCES = [
    {
        "uri": "test://static-text",
        "name": "static-text",
        "title": "Static Text Resource",
        "description": "A static text resource for testing",
        "mimeType": "text/plain",
    },
    {
        "uri": "test://static-binary",
        "name": "static-binary",
        "title": "Static Binary Resource",
        "description": "A static binary resource (image) for testing",
        "mimeType": "image/png",
    },
    {
        "uri": "test://watched-resource",
        "name": "watched-resource",
        "title": "Watched Resource",
        "description": "A resource that can be subscribed to",
        "mimeType": "text/plain",
    },
]
TEMPLATES = [
    {
        "uriTemplate": "test://template/{id}/data",
        "name": "template",
        "title": "Resource Template",
        "description": "A resource template with parameter substitution",
        "mimeType": "application/json",
    }
]
_TEMPLATE = re.compile(r"^test://template/(?P<id>[^/]+)/data$")


def _cacheable(call: Call, result: dict[str, Any]) -> dict[str, Any]:
    if call.era == "modern":
        result["ttlMs"] = 60_000
        result["cacheScope"] = "public"
    return result


async def resources_list(call: Call) -> dict[str, Any]:
    return _cacheable(call, {"resources": RESOURCES})


async def resources_templates_list(call: Call) -> dict[str, Any]:
    return _cacheable(call, {"resourceTemplates": TEMPLATES})


async def resources_read(call: Call) -> dict[str, Any]:
    uri = call.params.get("uri")
    if not isinstance(uri, str):
        raise RpcError(errors.INVALID_PARAMS, "resources/read needs params.uri")
    if uri == "test://static-text":
        contents = [{"uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."}]
    elif uri == "test://static-binary":
        contents = [{"uri": uri, "mimeType": "image/png", "blob": IMAGE}]
    elif uri == "test://watched-resource":
        contents = [{"uri": uri, "mimeType": "text/plain", "text": "Watched resource content"}]
    elif match := _TEMPLATE.match(uri):
        data = {"id": match["id"], "templateTest": True, "data": f"Data for ID: {match['id']}"}
        contents = [{"uri": uri, "mimeType": "application/json", "text": orjson.dumps(data).decode()}]
    else:
        code = errors.INVALID_PARAMS if call.era == "modern" else errors.RESOURCE_NOT_FOUND_LEGACY
        raise RpcError(code, f"Resource not found: {uri}", {"uri": uri})
    return _cacheable(call, {"contents": contents})


async def resources_subscribe(call: Call) -> dict[str, Any]:
    uri = call.params.get("uri")
    if not isinstance(uri, str):
        raise RpcError(errors.INVALID_PARAMS, "resources/subscribe needs params.uri")
    return {}


PROMPTS = [
    {"name": "test_simple_prompt", "title": "Simple Test Prompt", "description": "A simple prompt without arguments"},
    {
        "name": "test_prompt_with_arguments",
        "title": "Prompt With Arguments",
        "description": "A prompt with required arguments",
        "arguments": [
            {"name": "arg1", "description": "First test argument", "required": True},
            {"name": "arg2", "description": "Second test argument", "required": True},
        ],
    },
    {
        "name": "test_prompt_with_embedded_resource",
        "title": "Prompt With Embedded Resource",
        "description": "A prompt that includes an embedded resource",
        "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": True}],
    },
    {
        "name": "test_prompt_with_image",
        "title": "Prompt With Image",
        "description": "A prompt that includes image content",
    },
    {
        "name": "test_input_required_result_prompt",
        "title": "Prompt needing input",
        "description": "Test prompt: returns InputRequiredResult with elicitation request",
    },
]


async def prompts_list(call: Call) -> dict[str, Any]:
    prompts = PROMPTS if call.era == "modern" else PROMPTS[:4]
    return _cacheable(call, {"prompts": prompts})


def _user(content: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": content}


async def prompts_get(call: Call) -> dict[str, Any]:
    name = call.params.get("name")
    given = call.params.get("arguments")
    arguments = given if isinstance(given, dict) else {}
    if name == "test_simple_prompt":
        messages = [_user({"type": "text", "text": "This is a simple prompt for testing."})]
    elif name == "test_prompt_with_arguments":
        text = f"Prompt with arguments: arg1='{arguments.get('arg1')}', arg2='{arguments.get('arg2')}'"
        messages = [_user({"type": "text", "text": text})]
    elif name == "test_prompt_with_embedded_resource":
        resource = {
            "uri": arguments.get("resourceUri", "test://example-resource"),
            "mimeType": "text/plain",
            "text": "Embedded resource content for testing.",
        }
        messages = [
            _user({"type": "resource", "resource": resource}),
            _user({"type": "text", "text": "Please process the embedded resource above."}),
        ]
    elif name == "test_prompt_with_image":
        messages = [
            _user({"type": "image", "data": IMAGE, "mimeType": "image/png"}),
            _user({"type": "text", "text": "Please analyze the image above."}),
        ]
    elif name == "test_input_required_result_prompt" and call.era == "modern":
        responses = _responses(call)
        if responses.get("user_context"):
            text = f"Prompt with context: {_field(responses['user_context'], 'context')}"
            return {"messages": [_user({"type": "text", "text": text})]}
        return {
            "resultType": "input_required",
            "inputRequests": {"user_context": _elicit_request("What context should the prompt use?", "context")},
        }
    else:
        raise RpcError(errors.INVALID_PARAMS, f"Unknown prompt: {name}")
    return {"messages": messages}


async def completion_complete(call: Call) -> dict[str, Any]:
    return {"completion": {"values": [], "total": 0, "hasMore": False}}


async def _legacy_log_after_set_level(call: Call) -> dict[str, Any]:
    result = await protocol.logging_set_level(call)
    if call.session is not None:
        message = {
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"level": "info", "logger": "mcpplat", "data": f"Log level set to: {call.params['level']}"},
        }
        await sessions.publish(call.session.id, message)
    return result


_BOTH = frozenset({"legacy", "modern"})
_LEGACY = frozenset({"legacy"})
protocol.METHODS.update(
    {
        "resources/list": (resources_list, _BOTH),
        "resources/templates/list": (resources_templates_list, _BOTH),
        "resources/read": (resources_read, _BOTH),
        "resources/subscribe": (resources_subscribe, _LEGACY),
        "resources/unsubscribe": (resources_subscribe, _LEGACY),
        "prompts/list": (prompts_list, _BOTH),
        "prompts/get": (prompts_get, _BOTH),
        "completion/complete": (completion_complete, _BOTH),
        "logging/setLevel": (_legacy_log_after_set_level, _LEGACY),
    }
)
