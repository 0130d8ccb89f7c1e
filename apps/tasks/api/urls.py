from django.urls import path

from apps.tasks.api import views

app_name = "tasks"
urlpatterns = [
    path("tasks/", views.TaskCollectionApi.as_view(), name="task-collection"),
    path("tasks/next-action/", views.TaskNextActionApi.as_view(), name="task-next-action"),
    path("tasks/graph/", views.TaskGraphApi.as_view(), name="task-graph"),
    path("tasks/<int:task_id>/", views.TaskDetailApi.as_view(), name="task-detail"),
    path("projects/", views.ProjectCollectionApi.as_view(), name="project-collection"),
    path("projects/<slug:key>/grants/", views.ProjectGrantApi.as_view(), name="project-grants"),
]
