"""Staff manage tasks here. Every write goes through apps.tasks.services (same rules as the tools and the API);
a refused change is shown as an error message and nothing of it is kept."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.safestring import mark_safe

from apps.tasks import graph, selectors, services
from apps.tasks.errors import TaskError
from apps.tasks.models import Dependency, Project, ProjectGrant, Status, Task, TaskEvent
from apps.tasks.principals import principal_for_user

EDITABLE = ["title", "description", "status", "priority", "due_date", "assignee", "labels", "parent"]


class ProjectGrantInline(admin.TabularInline):
    model = ProjectGrant
    extra = 1


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "owner", "personal", "created_at"]
    search_fields = ["key", "name", "owner"]
    list_filter = ["personal"]
    inlines = [ProjectGrantInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Project | None = None) -> list[str]:
        return ["key", "owner"] if obj else ["owner"]

    def save_model(self, request: HttpRequest, obj: Project, form: forms.Form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = services.project_create(principal=principal_for_user(request.user), key=obj.key, name=obj.name)
        obj.pk, obj.owner, obj.created_at = created.pk, created.owner, created.created_at
        obj._state.adding = False

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        """Grants are given through the service (write access checked); removals are plain deletes."""
        principal = principal_for_user(request.user)
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for grant_form in formset.forms:
            if grant_form in formset.deleted_forms:
                if grant_form.instance.pk:
                    grant_form.instance.delete()
                    formset.deleted_objects.append(grant_form.instance)
            elif grant_form.has_changed() and grant_form.cleaned_data.get("subject"):
                grant = services.project_grant(
                    principal=principal,
                    project=form.instance,
                    subject=grant_form.cleaned_data["subject"],
                    access=grant_form.cleaned_data["access"],
                )
                formset.new_objects.append(grant)

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except TaskError as exc:  # rolled back with the admin's transaction
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


class DependencyInline(admin.TabularInline):
    model = Dependency
    fk_name = "task"
    extra = 1
    raw_id_fields = ["depends_on"]
    fields = ["depends_on", "depends_on_status", "created_by", "created_at"]
    readonly_fields = ["depends_on_status", "created_by", "created_at"]
    verbose_name = "dependency (this task waits on)"
    verbose_name_plural = "dependencies (this task waits on)"

    @admin.display(description="status")
    def depends_on_status(self, edge: Dependency) -> str:
        return edge.depends_on.status if edge.pk else ""


class SubtaskInline(admin.TabularInline):
    model = Task
    fk_name = "parent"
    extra = 0
    fields = ["title", "status", "priority", "assignee"]
    readonly_fields = ["title", "status", "priority", "assignee"]
    show_change_link = True
    can_delete = False
    verbose_name = "subtask"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # subtasks are created as tasks with this one as parent


class TaskEventInline(admin.TabularInline):
    model = TaskEvent
    extra = 0
    fields = ["at", "actor", "actor_name", "action", "changes"]
    readonly_fields = ["at", "actor", "actor_name", "action", "changes"]
    can_delete = False
    verbose_name_plural = "history"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TaskForm(forms.ModelForm):
    version = forms.IntegerField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = Task
        fields = ["project", *EDITABLE]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        current = self.instance
        if current.pk:
            if data.get("version") != Task.objects.values_list("version", flat=True).get(pk=current.pk):
                raise forms.ValidationError(
                    f"task #{current.pk} was changed by someone else since you opened it: reload the page and "
                    "reapply your change"
                )
            if "status" in self.changed_data:
                stored = Task.objects.get(pk=current.pk)
                try:
                    services.check_transition(task=stored, new_status=data["status"])
                except TaskError as exc:
                    self.add_error("status", exc.message)
        return data


def _status_action(new_status: str) -> Any:
    def action(modeladmin: TaskAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        principal = principal_for_user(request.user)
        changed, refused = 0, []
        for task in queryset.order_by("id"):
            try:
                services.task_update(principal=principal, task_id=task.pk, version=task.version, status=new_status)
                changed += 1
            except TaskError as exc:
                refused.append(exc.message)
        if changed:
            modeladmin.message_user(request, f"{changed} task(s) set to {new_status}", messages.SUCCESS)
        for message in refused:
            modeladmin.message_user(request, message, messages.ERROR)

    action.__name__ = f"mark_{new_status}"
    return admin.action(description=f"Set status to {Status(new_status).label}")(action)


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    form = TaskForm
    change_form_template = "admin/tasks/task/change_form.html"
    list_display = ["id", "title", "project", "status", "priority", "due_date", "assignee", "version", "updated_at"]
    list_display_links = ["id", "title"]
    list_filter = ["status", "priority", "project", "due_date", "assignee"]
    search_fields = ["title", "description", "assignee", "labels"]
    raw_id_fields = ["parent"]
    list_select_related = ["project"]
    inlines = [DependencyInline, SubtaskInline, TaskEventInline]
    actions = [_status_action(s) for s in Status.values]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        visible = selectors.projects_visible(principal=principal_for_user(request.user))
        return super().get_queryset(request).filter(project__in=visible)

    def get_form(self, request: HttpRequest, obj: Task | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.base_fields["version"].initial = obj.version if obj else None
        return form

    def get_readonly_fields(self, request: HttpRequest, obj: Task | None = None) -> list[str]:
        return ["project"] if obj else []

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        if object_id and request.method == "GET":
            task = self.get_object(request, object_id)
            if task is not None:
                project_graph = selectors.dep_graph(
                    principal=principal_for_user(request.user), root=None, project=task.project.key
                )
                around = graph.neighbourhood(project_graph, task.pk)
                extra_context["graph_svg"] = mark_safe(graph.svg(around, highlight=task.pk))  # noqa: S308 - escaped
                extra_context["graph_mermaid"] = graph.mermaid(around)
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except TaskError as exc:  # the admin's transaction was rolled back: nothing of this change is kept
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request: HttpRequest, obj: Task) -> None:
        services.task_delete(principal=principal_for_user(request.user), task_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        principal = principal_for_user(request.user)
        for task_id in queryset.order_by("-id").values_list("id", flat=True):
            if Task.objects.filter(pk=task_id).exists():  # may have gone with a deleted parent
                services.task_delete(principal=principal, task_id=task_id)

    def save_model(self, request: HttpRequest, obj: Task, form: forms.ModelForm, change: bool) -> None:
        principal = principal_for_user(request.user)
        data = form.cleaned_data
        if not change:
            created = services.task_create(
                principal=principal,
                project=data["project"].key,
                title=data["title"],
                description=data.get("description") or "",
                status=data["status"],
                priority=data["priority"],
                due_date=data.get("due_date"),
                assignee=data.get("assignee") or "",
                labels=data.get("labels") or [],
                parent=data["parent"].pk if data.get("parent") else None,
            )
        else:
            changes = {name: data[name] for name in EDITABLE if name in form.changed_data}
            if "parent" in changes:
                changes["parent"] = changes["parent"].pk if changes["parent"] else None
            created = services.task_update(principal=principal, task_id=obj.pk, version=data["version"], **changes)
        for name in ("id", "version", "created_at", "updated_at", "created_by", "status", "title"):
            setattr(obj, name, getattr(created, name))
        obj._state.adding = False

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        if formset.model is not Dependency:
            formset.save()
            return
        principal = principal_for_user(request.user)
        task = form.instance
        # what the admin's change message reads (normally set by formset.save())
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for edge_form in formset.forms:
            if not edge_form.has_changed() and edge_form not in formset.deleted_forms:
                continue
            before = edge_form.initial.get("depends_on")
            after = edge_form.cleaned_data.get("depends_on")
            if before and (edge_form in formset.deleted_forms or (after and after.pk != before)):
                services.dependency_remove(principal=principal, task_id=task.pk, depends_on_id=before)
                formset.deleted_objects.append(edge_form.instance)
            if after and edge_form not in formset.deleted_forms and (not before or after.pk != before):
                edge = services.dependency_add(principal=principal, task_id=task.pk, depends_on_id=after.pk)
                formset.new_objects.append(edge)
