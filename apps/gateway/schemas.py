"""JSON Schema validators that never leave the document: no `$ref`, `$id`, `$schema` or format reaches the network.

python-jsonschema's default registry retrieves any reference it does not hold with `urllib.request.urlopen`
(http, https, file, ftp ...), so a caller's `{"$ref": "http://127.0.0.1:5432/x"}` or `{"$ref": "file:///etc/passwd"}`
becomes a request made by the worker, and the fetched document shapes the error the caller reads back.
Every validator the platform builds comes from `offline_validator`: its registry holds the schema itself (with
its embedded `$id` resources and anchors) and the bundled JSON Schema metaschemas, and its `retrieve` refuses
everything else. Every `$ref` / `$dynamicRef` is resolved once up front, so a reference to anything outside the
document is a clear error naming where it sits, before any instance is validated. No format checker reaches
anything outside the process: `format` is an annotation, except the few formats `input_validator` checks below.

Tool input schemas also state what the stack can hold, and the gateway enforces it before a tool runs.
`harden(schema)` adds the bounds a declaration leaves implicit, so clients learn them from `tools/list`:
every `integer` without bounds gets PostgreSQL's bigint range, every `number` ±2**53, every unpatterned `string`
the NUL-free pattern, every object's property names the same. `input_validator(schema)` is Draft 2020-12 with
two stricter readings: `5.0` is not an `integer` (handlers slice and count with it), and the formats
`date-time`, `date` and `uuid` are checked (a date-time must fit years 1-9999 in UTC, as the database needs).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import referencing.jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.validators import extend
from jsonschema_specifications import REGISTRY as METASCHEMAS
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable

from apps.common.jsonvalues import FORMAT_PROBLEMS, INT64_MAX, INT64_MIN, NUL_FREE_PATTERN, NUMBER_MAX

if TYPE_CHECKING:
    from referencing._core import Resolver  # not re-exported by the package

_REF_KEYWORDS = ("$ref", "$dynamicRef")
ALLOWED = (
    "only references inside the schema itself are allowed: a JSON pointer such as #/$defs/name, an anchor (#name), "
    "or the $id of a subschema embedded in the same document"
)


MAX_DEPTH = 64  # JSON nesting of a schema document; jsonschema recurses several frames per level


def _depth(value: Any) -> int:
    """Nesting depth of a JSON document, without recursion (a deep one must not crash the check itself)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping | list):
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
            children = node.values() if isinstance(node, Mapping) else node
            stack.extend((child, depth + 1) for child in children)
    return deepest


class SchemaRefused(ValueError):
    """The schema is not valid, or points outside itself. `field` is where (e.g. `structured.schema.$ref`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _refuse(uri: str) -> Resource[Any]:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class


def _registry() -> Registry[Any]:
    return METASCHEMAS.combine(Registry(retrieve=_refuse))  # type: ignore[call-arg]


def offline_validator(schema: Any, *, field: str, cls: Any = Draft202012Validator) -> Any:
    """A Draft 2020-12 validator for `schema` that can resolve nothing outside it.

    Raises `SchemaRefused` naming `field` (and the keyword path) for a schema that breaks the metaschema or whose
    `$ref` / `$dynamicRef` points outside the document.
    """
    if _depth(schema) > MAX_DEPTH:
        raise SchemaRefused(field, f"nests deeper than {MAX_DEPTH} levels of objects and arrays; flatten it with $defs")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = ".".join([field, *map(str, exc.path)]) if exc.path else field
        raise SchemaRefused(where, f"is not a valid JSON Schema (2020-12): {exc.message}") from None
    registry = _registry()
    validator = cls(schema, registry=registry, format_checker=None)
    if isinstance(schema, Mapping):
        resource = referencing.jsonschema.DRAFT202012.create_resource(schema)
        root = registry.with_resource(resource.id() or "", resource).crawl()
        _check_refs(root.resolver_with_root(resource), resource, field)
    return validator


def _check_refs(resolver: Resolver[Any], resource: Resource[Any], where: str) -> None:
    contents = resource.contents
    if not isinstance(contents, Mapping):
        return
    for keyword in _REF_KEYWORDS:
        ref = contents.get(keyword)
        if isinstance(ref, str):
            try:
                resolver.lookup(ref)
            except Unresolvable:
                raise SchemaRefused(
                    f"{where}.{keyword}",
                    f"{ref!r} does not resolve inside the schema (nothing outside it is ever fetched); {ALLOWED}",
                ) from None
    for sub in resource.subresources():
        _check_refs(resolver.in_subresource(sub), sub, ".".join([where, *_locate(contents, sub.contents)]))


def _locate(parent: Mapping[str, Any], child: Any) -> list[str]:
    """The keyword path from a schema to one of its subschemas (subresources are the same objects)."""
    for path, value in _children(parent):
        if value is child:
            return path
    return ["?"]


def _children(parent: Mapping[str, Any]) -> Iterator[tuple[list[str], Any]]:
    for key, value in parent.items():
        yield [key], value
        if isinstance(value, Mapping):
            for inner, item in value.items():
                yield [key, str(inner)], item
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield [key, str(index)], item


# ------------------------------------------------------------------------------------- error messages

_COMBINATORS = ("oneOf", "anyOf")
_ARTICLE = {"array": "an array", "object": "an object", "integer": "an integer"}


def explain(error: ValidationError) -> str:
    """`error.message`, except that a `oneOf` / `anyOf` failure names its alternatives and what each lacks.

    jsonschema says only "... is not valid under any of the given schemas"; a caller needs to know which fields
    each alternative requires (e.g. sandbox.exec: give `command` or `code`) and why their value matched none.
    """
    if error.validator not in _COMBINATORS or not isinstance(error.validator_value, list):
        return error.message
    alternatives = error.validator_value
    exactly = error.validator == "oneOf"
    required_only = all(_only_required(alt) for alt in alternatives)
    options = (
        " or ".join(" + ".join(f"`{f}`" for f in alt["required"]) for alt in alternatives)
        if required_only
        else " | ".join(f"[{i + 1}] {describe(alt)}" for i, alt in enumerate(alternatives))
    )
    if not error.context:  # oneOf: no reasons means more than one alternative matched
        return f"matches more than one alternative: give exactly one of {options}, not several"
    if required_only:
        return f"give {'exactly' if exactly else 'at least'} one of {options}; none is present"
    parts = []
    for index, alternative in enumerate(alternatives):
        why = "; ".join(dict.fromkeys(_reasons(error, index)[:3]))
        parts.append(f"[{index + 1}] {describe(alternative)}: {why}")
    verb = "exactly one" if exactly else "at least one"
    return f"must match {verb} of {len(alternatives)} alternatives, and matches none: " + " | ".join(parts)


def describe(schema: Any) -> str:
    """A short human summary of one alternative: its type, required fields, constants, bounds."""
    if schema is True:
        return "anything"
    if schema is False or not isinstance(schema, Mapping):
        return "nothing"
    bits: list[str] = []
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []
    if kinds:
        bits.append(" or ".join(_ARTICLE.get(k, f"a {k}") for k in kinds))
    if kinds == ["array"] and isinstance(schema.get("items"), Mapping) and "type" in schema["items"]:
        bits[-1] = f"an array of {schema['items']['type']}s"
    if "const" in schema:
        bits.append(f"exactly {schema['const']!r}")
    if isinstance(schema.get("enum"), list):
        bits.append("one of " + ", ".join(map(repr, schema["enum"][:10])))
    for key, word in (("minLength", "at least {} character(s)"), ("maxLength", "at most {} characters")):
        if key in schema:
            bits.append(word.format(schema[key]))
    for key, word in (("minItems", "at least {} item(s)"), ("minimum", ">= {}"), ("maximum", "<= {}")):
        if key in schema:
            bits.append(word.format(schema[key]))
    if isinstance(schema.get("required"), list) and schema["required"]:
        bits.append("with " + ", ".join(f"`{f}`" for f in schema["required"]))
    if "$ref" in schema and not bits:
        bits.append(f"the schema at {schema['$ref']}")
    if not bits:
        return "a value matching the schema"
    head, rest = (bits[0], bits[1:]) if kinds else ("a value", bits)
    return f"{head} ({', '.join(rest)})" if rest else head


def _only_required(schema: Any) -> bool:
    return isinstance(schema, Mapping) and set(schema) == {"required"} and bool(schema["required"])


def _reasons(error: ValidationError, index: int) -> list[str]:
    return [
        sub.message for sub in error.context or () if sub.relative_schema_path and sub.relative_schema_path[0] == index
    ]


# ------------------------------------------------------------------------------------- bounds of the stack

_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_ONE = (
    "items",
    "additionalProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "propertyNames",
)


def _types(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)}
    return set()


def _harden_node(schema: Any) -> None:
    if not isinstance(schema, dict):
        return
    types = _types(schema)
    if "integer" in types:
        schema.setdefault("maximum", INT64_MAX)
        schema.setdefault("minimum", INT64_MIN)
    elif "number" in types:
        if "maximum" not in schema and "exclusiveMaximum" not in schema:
            schema["maximum"] = NUMBER_MAX
        if "minimum" not in schema and "exclusiveMinimum" not in schema:
            schema["minimum"] = -NUMBER_MAX
    if "string" in types and "pattern" not in schema and schema.get("format") not in FORMAT_PROBLEMS:
        schema["pattern"] = NUL_FREE_PATTERN
    if "object" in types and "propertyNames" not in schema:
        schema["propertyNames"] = {"pattern": NUL_FREE_PATTERN}
    for key in _SUBSCHEMA_MAPS:
        children = schema.get(key)
        if isinstance(children, dict):
            for child in children.values():
                _harden_node(child)
    for key in _SUBSCHEMA_LISTS:
        children = schema.get(key)
        if isinstance(children, list):
            for child in children:
                _harden_node(child)
    for key in _SUBSCHEMA_ONE:
        _harden_node(schema.get(key))


def harden(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` with the implicit bounds made explicit (see the module docstring)."""
    hardened = copy.deepcopy(schema)
    _harden_node(hardened)
    return hardened


def _is_integer(_checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _format(_validator: Any, format_name: Any, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    problem = FORMAT_PROBLEMS.get(format_name)
    if problem is not None and isinstance(instance, str) and (found := problem(instance)):
        yield ValidationError(f"{instance!r} {found}")


InputValidator = extend(
    Draft202012Validator,
    validators={"format": _format},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def input_validator(schema: dict[str, Any]) -> Any:
    """An offline validator of `schema` (hardened or not) with the stricter integer and format readings."""
    return offline_validator(schema, field="input_schema", cls=InputValidator)
