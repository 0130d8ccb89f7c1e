"""Staff REST endpoints for jobs."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.gateway.registry import ToolError
from apps.runs import selectors, services


class CancelRequest(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class JobStateResponse(serializers.Serializer):
    id = serializers.UUIDField()
    state = serializers.CharField()
    cancelled = serializers.BooleanField(help_text="false when the job had already finished (nothing changed)")
    detail = serializers.CharField()


class JobCancelView(APIView):
    """Cancel a job. A finished job is left unchanged: 200 with `cancelled: false` (a no-op, not an error)."""

    permission_classes = [permissions.IsAdminUser]

    @extend_schema(request=CancelRequest, responses={200: JobStateResponse})
    def post(self, request: Request, job_id: str) -> Response:
        body = CancelRequest(data=request.data or {})
        body.is_valid(raise_exception=True)
        principal = selectors.staff_principal(request.user)
        reason = body.validated_data["reason"] or f"cancelled by staff member {principal.name} (REST)"
        try:
            job = services.job_cancel(job_id=job_id, principal=principal, reason=reason)
        except ToolError as exc:
            return Response({"code": exc.code, "detail": exc.message}, status=status.HTTP_404_NOT_FOUND)
        noop: Any = job.cancel_was_noop  # type: ignore[attr-defined]
        detail = f"job already {job.state}; nothing changed" if noop else "cancelled"
        return Response({"id": str(job.pk), "state": job.state, "cancelled": not noop, "detail": detail})
