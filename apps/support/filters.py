"""The audit log's filter form and keyset cursors: bad input becomes a message naming the field, never a 500."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.utils import timezone

from apps.audit.models import Outcome

IDENTITY_SOURCES = ("api_token", "oauth", "tailnet", "session", "conformance", "internal")
SORTS = {"newest": "newest first", "oldest": "oldest first", "slowest": "slowest first"}
MIN_TEXT = 3  # trigram indexes need three characters to narrow anything
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
BIGINT_MAX = 2**63 - 1
PAGE_SIZES = (25, 50, 100, 200)


class CursorError(ValueError):
    """A page link this server did not issue (or one from a different sort)."""


class AuditFilterForm(forms.Form):
    principal = forms.CharField(required=False, max_length=200, help_text="exact principal id, e.g. user:3")
    tool = forms.CharField(required=False, max_length=128, help_text="exact tool name, e.g. task.list")
    outcome = forms.ChoiceField(required=False, choices=[("", "any"), *list(Outcome.choices)])
    error_code = forms.CharField(required=False, max_length=64, label="Error code")
    identity_source = forms.ChoiceField(
        required=False, label="Identity source", choices=[("", "any")] + [(s, s) for s in IDENTITY_SOURCES]
    )
    since = forms.DateTimeField(
        required=False,
        label="From (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "iso-8601"],
    )
    until = forms.DateTimeField(
        required=False,
        label="Until (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "iso-8601"],
    )
    q = forms.CharField(
        required=False,
        max_length=200,
        label="Text",
        help_text=f"request, trace or session id, method, or text in the arguments/detail (≥ {MIN_TEXT} characters)",
    )
    sort = forms.ChoiceField(required=False, choices=list(SORTS.items()))
    limit = forms.TypedChoiceField(
        required=False, coerce=int, label="Per page", choices=[(n, str(n)) for n in PAGE_SIZES]
    )

    def clean_since(self) -> datetime | None:
        return self._moment("since")

    def clean_until(self) -> datetime | None:
        return self._moment("until")

    def _moment(self, name: str) -> datetime | None:
        value: datetime | None = self.cleaned_data.get(name)
        if value is None:
            return None
        if timezone.is_naive(value):
            value = value.replace(tzinfo=UTC)
        if not EARLIEST <= value <= LATEST:
            raise forms.ValidationError(f"give a moment between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)")
        return value

    def clean_q(self) -> str:
        text = (self.cleaned_data.get("q") or "").strip()
        if text and len(text) < MIN_TEXT:
            raise forms.ValidationError(f"give at least {MIN_TEXT} characters to search for (you gave {len(text)})")
        return text

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and until <= since:
            self.add_error("until", "must be later than 'From'")
        for name in ("principal", "tool", "error_code"):
            data[name] = (data.get(name) or "").strip()
        data["sort"] = data.get("sort") or "newest"
        data["limit"] = data.get("limit") or 50
        return data


@dataclass(frozen=True)
class AuditFilters:
    principal: str = ""
    tool: str = ""
    outcome: str = ""
    error_code: str = ""
    identity_source: str = ""
    since: datetime | None = None
    until: datetime | None = None
    q: str = ""
    sort: str = "newest"

    @classmethod
    def from_form(cls, data: dict[str, Any]) -> AuditFilters:
        return cls(
            principal=data.get("principal") or "",
            tool=data.get("tool") or "",
            outcome=data.get("outcome") or "",
            error_code=data.get("error_code") or "",
            identity_source=data.get("identity_source") or "",
            since=data.get("since"),
            until=data.get("until"),
            q=data.get("q") or "",
            sort=data.get("sort") or "newest",
        )

    def as_query(self) -> dict[str, str]:
        """The filters as URL query parameters (for page links, exports and the live tail)."""
        query: dict[str, str] = {}
        for name in ("principal", "tool", "outcome", "error_code", "identity_source", "q"):
            if value := getattr(self, name):
                query[name] = value
        for name in ("since", "until"):
            if moment := getattr(self, name):
                query[name] = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        if self.sort != "newest":
            query["sort"] = self.sort
        return query

    def active(self) -> bool:
        return any(v for k, v in self.as_query().items() if k != "sort")


def form_problems(form: forms.Form) -> str:
    """The form's errors as one line: `field: message; field: message`."""
    return "; ".join(f"{field}: {' '.join(str(e) for e in errors)}" for field, errors in form.errors.items())


def parse_filters(params: Any) -> tuple[AuditFilterForm, AuditFilters | None]:
    data = params.copy()
    for name, default in (("sort", "newest"), ("limit", "50")):
        if not data.get(name):
            data[name] = default  # so the form shows what the page uses
    form = AuditFilterForm(data)
    if not form.is_valid():
        return form, None
    return form, AuditFilters.from_form(form.cleaned_data)


# ------------------------------------------------------------------------------------------------ cursors


def cursor_encode(sort: str, key: tuple[Any, ...]) -> str:
    text = ":".join([sort, *(repr(float(k)) if isinstance(k, float) else str(k) for k in key)])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def cursor_decode(sort: str, token: str) -> tuple[Any, ...]:
    """The key a cursor stands for: (sequence,) or, sorted by latency, (latency_ms, sequence)."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        kind, *parts = text.split(":")
        if kind != sort:
            raise CursorError("the page link belongs to a different sort order")
        if sort == "slowest":
            latency, sequence = float(parts[0]), int(parts[1])
            if len(parts) != 2 or latency != latency:  # noqa: PLR0124 (NaN)
                raise CursorError("malformed")
            key: tuple[Any, ...] = (latency, sequence)
        else:
            (sequence,) = (int(p) for p in parts)
            key = (sequence,)
    except CursorError:
        raise
    except (ValueError, UnicodeDecodeError, IndexError) as exc:
        raise CursorError("the page link is not one this server issued") from exc
    if not 0 <= sequence <= BIGINT_MAX:
        raise CursorError("the page link points outside the audit log")
    return key
