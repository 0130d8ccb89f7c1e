"""What the tools do to a page. Coroutines that run on the browser loop thread (apps.browser.runtime).

They raise ToolError for the caller's mistakes (stale ref, nothing matched, bad action) and return plain dicts.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from django.conf import settings
from jsonschema import Draft202012Validator
from referencing.exceptions import Unresolvable

from apps.browser.runtime import LiveSession
from apps.gateway.registry import ToolError
from apps.gateway.schemas import ALLOWED, SchemaRefused, explain, offline_validator

_REF = re.compile(r"\[ref=([A-Za-z0-9_]+)\]")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
ACTIONS = ("click", "type", "fill", "select", "press", "hover", "scroll", "wait", "back", "forward")


def _playwright_errors() -> tuple[type[Exception], type[Exception]]:
    from playwright.async_api import Error, TimeoutError

    return Error, TimeoutError


async def snapshot(session: LiveSession, *, max_chars: int | None = None) -> dict[str, Any]:
    """A bounded AI accessibility snapshot; its refs become the session's only valid refs."""
    limit = max_chars or settings.BROWSER_SNAPSHOT_MAX_CHARS
    text = await session.page.aria_snapshot(mode="ai", timeout=settings.BROWSER_ACTION_TIMEOUT_MS)
    truncated = len(text) > limit
    if truncated:
        cut = text.rfind("\n", 0, limit)
        text = text[: cut if cut > 0 else limit]
    session.refs = frozenset(_REF.findall(text))
    return {"snapshot": text, "truncated": truncated, "refs": len(session.refs)}


async def page_state(session: LiveSession, *, status: int | None = None) -> dict[str, Any]:
    page = session.page
    state: dict[str, Any] = {"session": session.id, "url": page.url, "title": await page.title()}
    if status is not None:
        state["status"] = status
    return state


async def state_and_snapshot(session: LiveSession, *, status: int | None = None) -> dict[str, Any]:
    """Title and snapshot in parallel: two independent round trips to the browser."""
    state, snap = await asyncio.gather(page_state(session, status=status), snapshot(session))
    return {**state, **snap}


async def navigate(session: LiveSession, url: str) -> dict[str, Any]:
    error, timeout_error = _playwright_errors()
    try:
        response = await session.page.goto(url, wait_until="load")
    except timeout_error:
        raise ToolError(
            "navigation_timeout",
            f"{url} did not finish loading within {settings.BROWSER_NAVIGATION_TIMEOUT_MS} ms "
            "(BROWSER_NAVIGATION_TIMEOUT_MS)",
            data={"url": url, "blocks": session.drain_blocks()},
            retryable=True,
        ) from None
    except error as exc:
        blocks = session.drain_blocks()
        if blocks:
            raise ToolError(
                "url_blocked",
                f"navigation to {url} was blocked by the domain policy: {blocks[-1]['detail']}",
                data={"url": url, "blocks": blocks},
            ) from None
        raise ToolError(
            "navigation_failed", f"{url} could not be loaded: {_first_line(exc)}", data={"url": url}
        ) from None
    if response is not None and (await response.header_value("x-mcpplat-blocked")) == "1":
        blocks = session.drain_blocks()
        raise ToolError(
            "url_blocked",
            f"navigation to {url} ended on {response.url}, which the domain policy blocks"
            + (f": {blocks[-1]['detail']}" if blocks else ""),
            data={"url": url, "final_url": response.url, "blocks": blocks},
        )
    return await state_and_snapshot(session, status=response.status if response else None)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


async def _locate(session: LiveSession, args: dict[str, Any]) -> Any:
    page = session.page
    ref = args.get("ref")
    if ref:
        if ref not in session.refs:
            raise ToolError(
                "stale_ref",
                f"ref {ref!r} is not in the latest snapshot of this session: use a ref from the most recent "
                "browser.open/browser.act/browser.extract snapshot",
                data={"ref": ref},
            )
        locator = page.locator(f"aria-ref={ref}")
        if await locator.count() == 0:
            raise ToolError(
                "stale_ref", f"ref {ref!r} points at an element that is gone: take a new snapshot", data={"ref": ref}
            )
        return locator
    role, name = args.get("role"), args.get("name")
    if role:
        locator = page.get_by_role(role, name=name, exact=True) if name else page.get_by_role(role)
        count = await locator.count()
        if count == 0:
            raise ToolError(
                "element_not_found", f"no element with role {role!r} and name {name!r}", data={"role": role}
            )
        if count > 1:
            raise ToolError(
                "element_ambiguous",
                f"{count} elements have role {role!r} and name {name!r}: use a ref from the snapshot",
                data={"role": role, "count": count},
            )
        return locator
    raise ToolError("invalid_arguments", f"action {args['action']!r} needs a target: give ref, or role (+ name)")


async def act(session: LiveSession, args: dict[str, Any]) -> dict[str, Any]:
    error, timeout_error = _playwright_errors()
    action = args["action"]
    page = session.page
    timeout = settings.BROWSER_ACTION_TIMEOUT_MS
    try:
        if action == "back":
            await page.go_back(wait_until="load")
        elif action == "forward":
            await page.go_forward(wait_until="load")
        elif action == "wait":
            if text := args.get("text"):
                await page.get_by_text(text).first.wait_for(timeout=min(args.get("ms") or timeout, 30_000))
            else:
                await asyncio.sleep(min(args.get("ms", 500), 10_000) / 1000)
        elif action == "scroll":
            if args.get("ref") or args.get("role"):
                await (await _locate(session, args)).scroll_into_view_if_needed()
            else:
                dy = args.get("amount", 600) * (-1 if args.get("direction") == "up" else 1)
                await page.mouse.wheel(0, dy)
        elif action == "press" and not (args.get("ref") or args.get("role")):
            await page.keyboard.press(_required(args, "key"))
        else:
            locator = await _locate(session, args)
            if action == "click":
                await locator.click()
            elif action == "hover":
                await locator.hover()
            elif action == "fill":
                await locator.fill(_required(args, "text"))
            elif action == "type":
                await locator.press_sequentially(_required(args, "text"))
            elif action == "select":
                values = args.get("values") or ([args["text"]] if args.get("text") else None)
                if not values:
                    raise ToolError("invalid_arguments", "select needs values (option values or labels)")
                try:
                    await locator.select_option(values, timeout=timeout)
                except timeout_error:
                    await locator.select_option(label=values, timeout=timeout)
            elif action == "press":
                await locator.press(_required(args, "key"))
            else:  # the input schema lists the actions; this is a programming error
                raise ToolError("invalid_arguments", f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
        with _suppress_timeout(timeout_error):
            await page.wait_for_load_state("load", timeout=2_000)
    except timeout_error:
        raise ToolError(
            "action_timeout",
            f"{action} did not complete within {timeout} ms: the element may be hidden, disabled or covered",
            data={"action": action, "blocks": session.drain_blocks()},
            retryable=True,
        ) from None
    except error as exc:
        raise ToolError("action_failed", f"{action} failed: {_first_line(exc)}", data={"action": action}) from None
    return await state_and_snapshot(session)


class _suppress_timeout:
    def __init__(self, kind: type[Exception]):
        self.kind = kind

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        return exc_type is not None and issubclass(exc_type, self.kind)


def _required(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not value:
        raise ToolError("invalid_arguments", f"action {args['action']!r} needs {name!r}", data={"field": name})
    return str(value)


# ------------------------------------------------------------------------------------------------ extract

_EXTRACT_JS = r"""
([what, scope, maxChars]) => {
  const root = scope ? document.querySelector(scope) : document.body;
  if (!root) return {missing: scope};
  const out = {};
  const clip = (s) => s.length > maxChars ? s.slice(0, maxChars) : s;
  const squash = (s) => (s || '').replace(/[ \t]+/g, ' ').replace(/\n\s*\n+/g, '\n\n').trim();
  if (what.includes('text')) out.text = clip(squash(root.innerText));
  if (what.includes('links')) {
    out.links = [...root.querySelectorAll('a[href]')].slice(0, 500)
      .map(a => ({text: squash(a.innerText).slice(0, 200), href: a.href}));
  }
  if (what.includes('tables')) {
    out.tables = [...root.querySelectorAll('table')].slice(0, 50).map(t => {
      const rows = [...t.rows].map(r => [...r.cells].map(c => squash(c.innerText)));
      const first = t.rows[0];
      const hasHead = first && [...first.cells].every(c => c.tagName === 'TH');
      return {headers: hasHead ? rows[0] : [], rows: (hasHead ? rows.slice(1) : rows).slice(0, 1000)};
    });
  }
  if (what.includes('markdown')) {
    const md = (node) => {
      if (node.nodeType === Node.TEXT_NODE) return node.textContent.replace(/\s+/g, ' ');
      if (node.nodeType !== Node.ELEMENT_NODE) return '';
      const tag = node.tagName.toLowerCase();
      if (['script', 'style', 'noscript', 'template', 'svg'].includes(tag)) return '';
      const style = getComputedStyle(node);
      if (style.display === 'none' || style.visibility === 'hidden') return '';
      const inner = () => [...node.childNodes].map(md).join('');
      if (/^h[1-6]$/.test(tag)) return '\n\n' + '#'.repeat(+tag[1]) + ' ' + inner().trim() + '\n\n';
      if (['p', 'div', 'section', 'article'].includes(tag)) return '\n\n' + inner().trim() + '\n\n';
      if (tag === 'br') return '\n';
      if (tag === 'a' && node.getAttribute('href')) return '[' + inner().trim() + '](' + node.href + ')';
      if (tag === 'li') return '\n- ' + inner().trim();
      if (tag === 'strong' || tag === 'b') return '**' + inner().trim() + '**';
      if (tag === 'em' || tag === 'i') return '*' + inner().trim() + '*';
      if (tag === 'code') return '`' + inner() + '`';
      if (tag === 'pre') return '\n\n```\n' + node.innerText + '\n```\n\n';
      if (tag === 'table') {
        const cell = (c) => c.innerText.trim().replace(/\|/g, '\\|');
        const rows = [...node.rows].map(r => '| ' + [...r.cells].map(cell).join(' | ') + ' |');
        if (rows.length) rows.splice(1, 0, '|' + ' --- |'.repeat(node.rows[0].cells.length));
        return '\n\n' + rows.join('\n') + '\n\n';
      }
      return inner();
    };
    out.markdown = clip(md(root).replace(/[ \t]+\n/g, '\n').replace(/\n{3,}/g, '\n\n').trim());
  }
  return out;
}
"""

_FIELD_JS = r"""
([selector, attribute, all]) => {
  const nodes = [...document.querySelectorAll(selector)];
  const value = (n) => attribute ? n.getAttribute(attribute) : (n.innerText || n.textContent || '').trim();
  return all ? nodes.map(value) : (nodes.length ? value(nodes[0]) : null);
}
"""


async def extract(session: LiveSession, args: dict[str, Any]) -> dict[str, Any]:
    error, _ = _playwright_errors()
    what = [w for w in args.get("what", ["text"]) if w in ("text", "markdown", "links", "tables")]
    result: dict[str, Any] = await page_state(session)
    page = session.page
    try:
        if what:
            data = await page.evaluate(_EXTRACT_JS, [what, args.get("selector"), args.get("max_chars", 50_000)])
            if "missing" in data:
                raise ToolError(
                    "selector_no_match",
                    f"selector {args['selector']!r} matches nothing on {page.url}",
                    data={"field": "selector", "selector": args["selector"]},
                )
            result.update(data)
        if "structured" in args:
            result["data"] = await _structured(session, args["structured"])
        if "snapshot" in args.get("what", []):
            result.update(await snapshot(session))
        if "screenshot" in args.get("what", []):
            result["screenshot_png"] = await page.screenshot(full_page=bool(args.get("full_page")), type="png")
    except error as exc:
        raise ToolError("extract_failed", f"extraction failed: {_first_line(exc)}") from None
    return result


def _coerce(value: Any, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if value is None:
        return None
    if kind == "array":
        return [_coerce(v, schema.get("items", {})) for v in value]
    if kind in ("number", "integer"):
        match = _NUMBER.search(str(value).replace(",", ""))
        if match is None:
            return value  # the schema check names the field and the text found
        number = float(match.group())
        return int(number) if kind == "integer" and number.is_integer() else number
    if kind == "boolean":
        return str(value).strip().lower() in {"true", "yes", "1", "on", "checked"}
    return value


def structured_validator(schema: Any) -> Draft202012Validator:
    """The caller's `structured.schema`, compiled offline (`apps.gateway.schemas`): no reference is ever fetched."""
    try:
        return offline_validator(schema, field="structured.schema")
    except SchemaRefused as exc:
        raise ToolError("invalid_arguments", str(exc)) from None


async def _structured(session: LiveSession, spec: dict[str, Any]) -> dict[str, Any]:
    error, _ = _playwright_errors()
    schema, fields = spec.get("schema") or {}, spec.get("fields") or {}
    validator = structured_validator(schema)
    properties = schema.get("properties", {})
    out: dict[str, Any] = {}
    empty: list[str] = []
    for name, field_spec in fields.items():
        selector = field_spec if isinstance(field_spec, str) else field_spec.get("selector")
        attribute = None if isinstance(field_spec, str) else field_spec.get("attribute")
        prop = properties.get(name, {})
        many = prop.get("type") == "array"
        try:
            raw = await session.page.evaluate(_FIELD_JS, [selector, attribute, many])
        except error as exc:
            raise ToolError(
                "invalid_arguments", f"structured.fields.{name}: selector {selector!r} is invalid: {_first_line(exc)}"
            ) from None
        if raw is None or raw == []:
            empty.append(f"{name} ({selector!r})")
        if raw is not None:
            out[name] = _coerce(raw, prop)
    try:
        errors = sorted(validator.iter_errors(out), key=lambda e: list(e.path))
    except (Unresolvable, RecursionError):
        # `structured_validator` resolved every reference up front; a dynamic scope or a `$ref` cycle can still
        # fail here, and it is the caller's schema that is wrong (nothing is ever fetched).
        raise ToolError(
            "invalid_arguments",
            f"structured.schema cannot be evaluated: a reference loops or does not resolve inside it; {ALLOWED}",
        ) from None
    if errors:
        problems = "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {explain(e)}" for e in errors[:5])
        raise ToolError(
            "extraction_invalid",
            f"the extracted data does not match structured.schema: {problems}"
            + (f". Selectors that matched nothing: {', '.join(empty)}" if empty else ""),
            data={"data": out, "unmatched": empty},
        )
    return out
