from django.urls import path

from apps.support import consumers

websocket_urlpatterns = [
    path("ws/support/audit/", consumers.AuditTailConsumer.as_asgi()),
    path("ws/support/runs/<str:object_id>/", consumers.RunTimelineConsumer.as_asgi()),
    path("ws/support/jobs/<str:object_id>/", consumers.JobTimelineConsumer.as_asgi()),
]
