"""The browser's domain policy: the security boundary between a page and the network.

Pure functions and values, no I/O except name resolution (`resolve`). The egress proxy (apps.browser.egress)
and the tool services call `check_url` / `check_host` / `check_addresses`; nothing else decides whether a
connection may be made.

Host names are parsed the way a browser parses them (WHATWG URL host parser for IPv4 numbers), so
`http://2130706433/`, `http://0x7f.1/` and `http://0177.0.0.1/` are recognised as 127.0.0.1 here exactly as
Chromium will see them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

WEB_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Besides everything `is_global` rejects (loopback, RFC 1918, link-local incl. 169.254.169.254, CGNAT
# 100.64/10, ULA fc00::/7, documentation, benchmarking …) these are refused explicitly: well-known cloud
# metadata addresses and ranges some `ipaddress` versions call global.
_ALWAYS_INTERNAL: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "192.0.0.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "fd00:ec2::/32",  # AWS IPv6 metadata lives at fd00:ec2::254
        "64:ff9b::/96",  # NAT64: embeds an IPv4 address, checked separately below
        "64:ff9b:1::/48",
        "2002::/16",  # 6to4: embeds an IPv4 address
        "ff00::/8",
    )
)


class PolicyError(Exception):
    """A request the policy refuses. `reason` is a stable code; `detail` a sentence for the caller."""

    def __init__(self, reason: str, detail: str, *, url: str = "", address: str | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.url = url
        self.address = address

    def as_dict(self) -> dict[str, str | None]:
        return {"url": self.url, "reason": self.reason, "detail": self.detail, "address": self.address}


@dataclass(frozen=True)
class InternalAllowance:
    """An explicit exception to the internal-address block: a network, optionally one port."""

    network: IPNetwork
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> InternalAllowance:
        raw = text.strip()
        port: int | None = None
        if raw.startswith("["):  # [v6]:port or [v6/len]:port
            inner, _, rest = raw[1:].partition("]")
            raw = inner
            if rest:
                port = _parse_port(rest.removeprefix(":"), text)
        elif raw.count(":") == 1:  # v4:port
            raw, _, port_text = raw.partition(":")
            port = _parse_port(port_text, text)
        try:
            network = ipaddress.ip_network(raw, strict=False)
        except ValueError:
            raise ValueError(
                f"allowed internal address {text!r}: use an IP or CIDR, optionally with :port "
                "(127.0.0.1:8080, 10.0.0.0/8, [::1]:8080)"
            ) from None
        return cls(network, port)

    def covers(self, address: IPAddress, port: int) -> bool:
        return address in self.network and (self.port is None or self.port == port)


def _parse_port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{whole!r}: the port must be a number from 1 to 65535")
    return int(text)


@dataclass(frozen=True)
class DomainPolicy:
    """Allow/deny host patterns for one role, plus explicit internal-address exceptions.

    Patterns: `example.com` (that host), `*.example.com` (its subdomains), `*` (any host), each optionally
    with `:port`. Deny wins over allow. Internal addresses (loopback, private, link-local, CGNAT, metadata,
    their IPv6 and IPv4-mapped forms) are refused after resolution unless `allow_internal` covers them.
    """

    name: str
    allow: tuple[str, ...] = ("*",)
    deny: tuple[str, ...] = ()
    allow_internal: tuple[InternalAllowance, ...] = ()
    allow_downloads: bool = False
    max_sessions: int = 4

    @classmethod
    def build(
        cls,
        *,
        name: str,
        allow: Iterable[str] = ("*",),
        deny: Iterable[str] = (),
        allow_internal: Iterable[str] = (),
        allow_downloads: bool = False,
        max_sessions: int = 4,
    ) -> DomainPolicy:
        return cls(
            name=name,
            allow=tuple(p.strip().lower() for p in allow if p.strip()),
            deny=tuple(p.strip().lower() for p in deny if p.strip()),
            allow_internal=tuple(InternalAllowance.parse(a) for a in allow_internal if a.strip()),
            allow_downloads=allow_downloads,
            max_sessions=max_sessions,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "allow": list(self.allow),
            "deny": list(self.deny),
            "allow_internal": [
                f"{a.network}" + (f":{a.port}" if a.port else "") if a.network.version == 4 else f"[{a.network}]"
                for a in self.allow_internal
            ],
            "allow_downloads": self.allow_downloads,
            "max_sessions": self.max_sessions,
        }


# ------------------------------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lower-case name, dotted IPv4, or bare IPv6 (no brackets)
    port: int
    url: str
    address: IPAddress | None = field(default=None)  # set when the host is an IP literal


def parse_ipv4_host(host: str) -> ipaddress.IPv4Address | None:
    """WHATWG IPv4 parser: `127.1`, `0x7f000001`, `2130706433`, `0177.0.0.1` → 127.0.0.1; None if not IPv4."""
    parts = host.split(".")
    if parts and parts[-1] == "":
        parts = parts[:-1]
    if not parts or len(parts) > 4:
        return None
    numbers: list[int] = []
    for part in parts:
        if part == "":
            return None
        base, digits = 10, part
        if len(part) >= 2 and part[:2].lower() == "0x":
            base, digits = 16, part[2:] or "0"
        elif len(part) >= 2 and part[0] == "0":
            base, digits = 8, part[1:]
        try:
            numbers.append(int(digits, base))
        except ValueError:
            return None
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise PolicyError("invalid_url", f"host {host!r} is an out-of-range IPv4 number")
    value = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        value += n * 256 ** (3 - i)
    return ipaddress.IPv4Address(value)


def parse_target(url: str) -> Target:
    """Split and normalise a URL the caller or the page asked for. Raises PolicyError for bad or non-web URLs."""
    if not isinstance(url, str) or not url.strip():
        raise PolicyError("invalid_url", "url is empty: give an absolute http:// or https:// URL", url=str(url))
    text = url.strip()
    if any(c in text for c in "\r\n\t\x00"):
        raise PolicyError("invalid_url", "url contains control characters", url=text)
    try:
        parts = urlsplit(text)
        raw_port = parts.port
    except ValueError as exc:
        raise PolicyError("invalid_url", f"url {text!r} cannot be parsed: {exc}", url=text) from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise PolicyError("invalid_url", f"url {text!r} has no scheme: give an absolute http(s):// URL", url=text)
    if scheme not in WEB_SCHEMES and scheme not in {"ws", "wss"}:
        raise PolicyError(
            "scheme_blocked", f"the {scheme}: scheme is refused: only http:// and https:// may be browsed", url=text
        )
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise PolicyError("invalid_url", f"url {text!r} has no host", url=text)
    port = raw_port or DEFAULT_PORTS[scheme]
    address: IPAddress | None = None
    if ":" in host:
        try:
            address = ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise PolicyError("invalid_url", f"host {host!r} is not a valid IPv6 address", url=text) from None
    else:
        try:
            address = parse_ipv4_host(host)
        except PolicyError as exc:
            exc.url = text
            raise
        if address is not None:
            host = str(address)
        elif not all(c.isalnum() or c in "-._" for c in host):
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise PolicyError("invalid_url", f"host {host!r} is not a valid host name", url=text) from None
    return Target(scheme=scheme, host=host, port=port, url=text, address=address)


# ------------------------------------------------------------------------------------------------ checks


def _pattern_matches(pattern: str, host: str, port: int) -> bool:
    host_pattern, _, port_text = pattern.rpartition(":") if pattern.count(":") == 1 else (pattern, "", "")
    if port_text and port_text.isdigit():
        if int(port_text) != port:
            return False
    else:
        host_pattern = pattern
    if host_pattern == "*":
        return True
    if host_pattern.startswith("*."):
        return host.endswith(host_pattern[1:])
    return fnmatchcase(host, host_pattern)


def check_host(policy: DomainPolicy, target: Target) -> None:
    """Allow/deny lists. Raises PolicyError("domain_denied"/"domain_not_allowed")."""
    if any(_pattern_matches(p, target.host, target.port) for p in policy.deny):
        raise PolicyError(
            "domain_denied", f"{target.host} is on the deny list of policy {policy.name!r}", url=target.url
        )
    if not any(_pattern_matches(p, target.host, target.port) for p in policy.allow):
        raise PolicyError(
            "domain_not_allowed",
            f"{target.host}:{target.port} is not on the allow list of policy {policy.name!r}: ask an admin to "
            "allow it for your role",
            url=target.url,
        )


def is_internal(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is None and address in ipaddress.ip_network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and is_internal(embedded):
            return True
    if any(address in net for net in _ALWAYS_INTERNAL if net.version == address.version):
        return True
    return not address.is_global or address.is_multicast or address.is_unspecified or address.is_reserved


def check_address(policy: DomainPolicy, target: Target, address: IPAddress) -> None:
    if not is_internal(address):
        return
    if any(a.covers(address, target.port) for a in policy.allow_internal):
        return
    raise PolicyError(
        "address_blocked",
        f"{target.host} resolves to {address}, an internal (loopback/private/link-local/metadata) address",
        url=target.url,
        address=str(address),
    )


Resolver = Callable[[str], Awaitable[list[str]]]


async def system_resolve(host: str) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_checked(policy: DomainPolicy, target: Target, resolver: Resolver) -> IPAddress:
    """Resolve the host ourselves and check EVERY address; return the one to connect to (pinned).

    Every address must pass, so a name that resolves to one public and one private address is refused
    (a rebinding attacker cannot win the race by adding records).
    """
    check_host(policy, target)
    if target.address is not None:
        check_address(policy, target, target.address)
        return target.address
    try:
        answers = await resolver(target.host)
    except (OSError, UnicodeError) as exc:
        raise PolicyError("dns_failed", f"{target.host} could not be resolved: {exc}", url=target.url) from None
    if not answers:
        raise PolicyError("dns_failed", f"{target.host} has no addresses", url=target.url)
    addresses = [ipaddress.ip_address(a.split("%")[0]) for a in answers]
    for address in addresses:
        check_address(policy, target, address)
    return addresses[0]
