from django.urls import path

from apps.runs.api.views import JobCancelView

app_name = "runs"
urlpatterns = [
    path("jobs/<str:job_id>/cancel", JobCancelView.as_view(), name="job-cancel"),
]
