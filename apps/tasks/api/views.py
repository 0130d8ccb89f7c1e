"""REST API for tasks: the same services and selectors as the MCP tools, with the caller mapped to a Principal.

Each view checks the tool permission of the operation it mirrors (task.create, task.update, ...), so a role that
may not call a tool may not do the same thing over REST.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.principal import Principal
from apps.tasks import graph, selectors, services
from apps.tasks.errors import TaskError
from apps.tasks.models import Priority, Project, Status
from apps.tasks.principals import principal_for_user
from apps.tasks.schemas import task_dict
from apps.tasks.tools import next_action_dict

PRIORITIES = [label for _, label in Priority.choices]


class TaskOutput(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    status = serializers.ChoiceField(choices=Status.values)
    priority = serializers.ChoiceField(choices=PRIORITIES)
    due_date = serializers.DateField(allow_null=True)
    assignee = serializers.CharField(allow_null=True)
    labels = serializers.ListField(child=serializers.CharField())
    parent = serializers.IntegerField(allow_null=True)  # type: ignore[assignment]
    version = serializers.IntegerField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ErrorOutput(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    data = serializers.DictField()  # type: ignore[assignment]


class TaskApi(APIView):
    permission_name = ""

    def principal(self, request: Request, permission: str | None = None) -> Principal:
        principal = principal_for_user(request.user)
        needed = permission or self.permission_name
        if not principal.can_call(needed):
            raise TaskError("forbidden", f"your roles do not grant {needed!r}: ask an admin for a role that does")
        return principal

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, TaskError):
            return Response({"code": exc.code, "message": exc.message, "data": exc.data}, status=exc.http_status)
        return super().handle_exception(exc)


def _validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class TaskCollectionApi(TaskApi):
    class TaskListInput(serializers.Serializer):
        project = serializers.CharField(required=False)
        status = serializers.MultipleChoiceField(choices=Status.values, required=False)
        assignee = serializers.CharField(required=False)
        label = serializers.CharField(required=False)  # type: ignore[assignment]
        parent = serializers.IntegerField(required=False, min_value=1)  # type: ignore[assignment]
        top_level = serializers.BooleanField(required=False)
        text = serializers.CharField(required=False)
        sort = serializers.ChoiceField(choices=list(selectors.ORDERINGS), required=False)
        cursor = serializers.CharField(required=False)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=200)

    class TaskCreateInput(serializers.Serializer):
        project = serializers.SlugField(required=False)
        title = serializers.CharField(max_length=300)
        description = serializers.CharField(required=False, allow_blank=True)
        status = serializers.ChoiceField(choices=Status.values, required=False)  # the service names what may start
        priority = serializers.ChoiceField(choices=PRIORITIES, required=False)
        due_date = serializers.DateField(required=False, allow_null=True)
        assignee = serializers.CharField(required=False, allow_blank=True)
        labels = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
        parent = serializers.IntegerField(required=False, min_value=1)  # type: ignore[assignment]
        depends_on = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False)

    class TaskListOutput(serializers.Serializer):
        tasks = TaskOutput(many=True)
        next_cursor = serializers.CharField(allow_null=True)

    @extend_schema(
        parameters=[TaskListInput], responses={200: TaskListOutput, 400: ErrorOutput}, operation_id="task_list"
    )
    def get(self, request: Request) -> Response:
        principal = self.principal(request, "task.list")
        query = {
            key: request.query_params.getlist(key) if key == "status" else value
            for key, value in request.query_params.items()
        }
        args = _validated(self.TaskListInput, query)
        if "status" in args:
            args["status"] = sorted(args["status"])
        if "sort" in args:
            args["order"] = args.pop("sort")
        page = selectors.task_list(principal=principal, **args)
        return Response({"tasks": [task_dict(t) for t in page.tasks], "next_cursor": page.next_cursor})

    @extend_schema(request=TaskCreateInput, responses={201: TaskOutput, 400: ErrorOutput}, operation_id="task_create")
    def post(self, request: Request) -> Response:
        principal = self.principal(request, "task.create")
        task = services.task_create(principal=principal, **_validated(self.TaskCreateInput, request.data))
        return Response(task_dict(task), status=status.HTTP_201_CREATED)


class TaskDetailApi(TaskApi):
    class TaskUpdateInput(serializers.Serializer):
        version = serializers.IntegerField(min_value=1)
        title = serializers.CharField(max_length=300, required=False)
        description = serializers.CharField(required=False, allow_blank=True)
        status = serializers.ChoiceField(choices=Status.values, required=False)
        priority = serializers.ChoiceField(choices=PRIORITIES, required=False)
        due_date = serializers.DateField(required=False, allow_null=True)
        assignee = serializers.CharField(required=False, allow_blank=True, allow_null=True)
        labels = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
        add_labels = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
        remove_labels = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
        parent = serializers.IntegerField(required=False, allow_null=True, min_value=1)  # type: ignore[assignment]
        add_dependencies = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False)
        remove_dependencies = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False)

    class TaskDetailOutput(TaskOutput):
        depends_on = serializers.ListField(child=serializers.IntegerField())
        subtasks = serializers.ListField(child=serializers.IntegerField())
        history = serializers.ListField(child=serializers.DictField())

    @extend_schema(responses={200: TaskDetailOutput, 404: ErrorOutput}, operation_id="task_get")
    def get(self, request: Request, task_id: int) -> Response:
        task = selectors.task_access(principal=self.principal(request, "task.list"), task_id=task_id)
        return Response(
            {
                **task_dict(task),
                "depends_on": sorted(task.dependency_edges.values_list("depends_on_id", flat=True)),
                "subtasks": sorted(task.subtasks.values_list("id", flat=True)),
                "history": selectors.task_events(task=task),
            }
        )

    @extend_schema(request=TaskUpdateInput, responses={200: TaskOutput, 409: ErrorOutput}, operation_id="task_update")
    def patch(self, request: Request, task_id: int) -> Response:
        principal = self.principal(request, "task.update")
        task = services.task_update(
            principal=principal, task_id=task_id, **_validated(self.TaskUpdateInput, request.data)
        )
        return Response(task_dict(task))


class TaskNextActionApi(TaskApi):
    class TaskNextActionInput(serializers.Serializer):
        project = serializers.SlugField(required=False)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=100)
        claim = serializers.BooleanField(required=False)

    class TaskNextActionOutput(serializers.Serializer):
        ready = serializers.ListField(child=serializers.DictField())
        claimed = TaskOutput(allow_null=True)
        message = serializers.CharField()

    @extend_schema(request=TaskNextActionInput, responses={200: TaskNextActionOutput}, operation_id="task_next_action")
    def post(self, request: Request) -> Response:
        principal = self.principal(request, "task.next_action")
        return Response(
            next_action_dict(
                services.task_next_action(principal=principal, **_validated(self.TaskNextActionInput, request.data))
            )
        )


class TaskGraphApi(TaskApi):
    class TaskGraphInput(serializers.Serializer):
        project = serializers.SlugField(required=False)
        root = serializers.IntegerField(required=False, min_value=1)  # type: ignore[assignment]
        # not `format`: DRF reserves that query parameter for content negotiation
        render = serializers.ChoiceField(choices=["json", "mermaid", "dot"], required=False)

    @extend_schema(
        parameters=[TaskGraphInput],
        responses={200: {"type": "object"}, 404: ErrorOutput},
        operation_id="task_dep_graph",
        description="JSON nodes/edges; render=mermaid or render=dot returns that text.",
    )
    def get(self, request: Request) -> Response:
        principal = self.principal(request, "task.dep_graph")
        args = _validated(self.TaskGraphInput, request.query_params)
        result = selectors.dep_graph(principal=principal, project=args.get("project"), root=args.get("root"))
        fmt = args.get("render", "json")
        if fmt == "mermaid":
            return Response({"mermaid": graph.mermaid(result)})
        if fmt == "dot":
            return Response({"dot": graph.dot(result)})
        return Response(graph.graph_json(result))


class ProjectOutput(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["key", "name", "owner", "personal", "created_at"]


class ProjectCollectionApi(TaskApi):
    class ProjectCreateInput(serializers.Serializer):
        key = serializers.SlugField(max_length=64)
        name = serializers.CharField(max_length=200, required=False)

    @extend_schema(responses={200: ProjectOutput(many=True)}, operation_id="project_list")
    def get(self, request: Request) -> Response:
        principal = self.principal(request, "task.list")
        return Response(ProjectOutput(selectors.projects_visible(principal=principal), many=True).data)

    @extend_schema(request=ProjectCreateInput, responses={201: ProjectOutput}, operation_id="project_create")
    def post(self, request: Request) -> Response:
        principal = self.principal(request, "task.create")
        project = services.project_create(principal=principal, **_validated(self.ProjectCreateInput, request.data))
        return Response(ProjectOutput(project).data, status=status.HTTP_201_CREATED)


class ProjectGrantApi(TaskApi):
    class ProjectGrantInput(serializers.Serializer):
        subject = serializers.RegexField(r"^(\*|role:[\w.-]+|(user|service|oauth|test):.+)$", max_length=200)
        access = serializers.ChoiceField(choices=["read", "write"])

    @extend_schema(request=ProjectGrantInput, responses={201: ProjectGrantInput}, operation_id="project_grant")
    def post(self, request: Request, key: str) -> Response:
        principal = self.principal(request, "task.update")
        project = selectors.project_access(principal=principal, key=key, write=True)
        grant = services.project_grant(
            principal=principal, project=project, **_validated(self.ProjectGrantInput, request.data)
        )
        return Response({"subject": grant.subject, "access": grant.access}, status=status.HTTP_201_CREATED)
