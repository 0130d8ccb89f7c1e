"""ASGI entry point: a Channels ProtocolTypeRouter.

HTTP requests for exactly `/mcp` go to the gateway's lean ASGI app (no Django middleware, no thread hops);
everything else goes to Django. WebSockets go through Channels' auth stack.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpplat.settings.base")

from django.core.asgi import get_asgi_application

django_http = get_asgi_application()  # before importing anything that touches models

from django.conf import settings  # noqa: E402

if not settings.PRODUCTION:
    # Development and tests serve the admin's CSS and JS themselves; production runs collectstatic behind a proxy.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_http = ASGIStaticFilesHandler(django_http)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from mcpplat.routing import http_router, websocket_urlpatterns  # noqa: E402

if settings.EMBEDDING_WARM_AT_START:
    # memory.search embeds its query in this process: load the model before the first request, not during it.
    from apps.memory.middleware import warm_embeddings

    warm_embeddings(resume=False)

application = ProtocolTypeRouter(
    {
        "http": http_router(django_http),  # type: ignore[arg-type]
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
