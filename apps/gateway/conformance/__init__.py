"""The conformance-suite profile: fixture tools/resources/prompts and a loopback-only test principal.

Active only under `apps.gateway.conformance.settings` (never an env var), which refuses production mode.
"""
