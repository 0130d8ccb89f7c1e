from django.urls import path, register_converter

from apps.support import views


class _BigSequence:
    """Digits only; values beyond bigint are answered with a clear 404 by the view, not a database error."""

    regex = "[0-9]{1,30}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(_BigSequence, "seq")

app_name = "support"
urlpatterns = [
    path("", views.index, name="index"),
    path("login/", views.SupportLoginView.as_view(), name="login"),
    path("logout/", views.SupportLogoutView.as_view(), name="logout"),
    path("audit/", views.audit_list, name="audit"),
    path("audit/chain/", views.audit_chain, name="audit_chain"),
    path("audit/export.csv", views.audit_export, {"fmt": "csv"}, name="audit_export_csv"),
    path("audit/export.jsonl", views.audit_export, {"fmt": "jsonl"}, name="audit_export_jsonl"),
    path("audit/<seq:sequence>/", views.audit_detail, name="audit_event"),
    path("runs/", views.run_list, name="runs"),
    path("runs/<str:run_id>/", views.run_detail, name="run"),
    path("runs/<str:run_id>/cancel/", views.run_cancel, name="run_cancel"),
    path("jobs/<str:job_id>/", views.job_detail, name="job"),
    path("jobs/<str:job_id>/cancel/", views.job_cancel, name="job_cancel"),
]
