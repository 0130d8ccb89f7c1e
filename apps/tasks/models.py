"""Tasks, their projects (namespaces), dependency edges and history.

The database enforces what it can: unique project keys, no self-dependency, no duplicate edge, no task as its own
parent, known statuses and priorities, a positive version. Rules that span rows (cycles, cross-project edges,
status transitions) are enforced by apps.tasks.services under a per-project advisory lock.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import F, Q


class Access(models.TextChoices):
    READ = "read", "read"
    WRITE = "write", "write"


class Project(models.Model):
    """A namespace of tasks. Its owner and its grants decide who may read or write its tasks."""

    key = models.SlugField(max_length=64, unique=True, help_text="Short stable name used by tools and the API.")
    name = models.CharField(max_length=200)
    owner = models.CharField(max_length=200, help_text='Principal id of the owner, e.g. "user:42".')
    personal = models.BooleanField(default=False, help_text="The owner's default project, created on first use.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class ProjectGrant(models.Model):
    """Access to a project for one principal ("user:42"), every holder of a role ("role:agent") or everyone ("*")."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="grants")
    subject = models.CharField(max_length=200, help_text='"user:42", "service:7", "role:agent" or "*".')
    access = models.CharField(max_length=8, choices=Access.choices, default=Access.READ)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "subject"], name="tasks_grant_unique_subject")]

    def __str__(self) -> str:
        return f"{self.subject} {self.access} {self.project.key}"


class Status(models.TextChoices):
    TODO = "todo", "todo"
    IN_PROGRESS = "in_progress", "in progress"
    BLOCKED = "blocked", "blocked"
    DONE = "done", "done"
    CANCELLED = "cancelled", "cancelled"
    DEFERRED = "deferred", "deferred"


# A dependency is satisfied once it is done or cancelled: cancelled work will never happen, so waiting on it would
# block the dependent forever (Taskmaster's behaviour). next_action's reason names a cancelled dependency.
RESOLVED = (Status.DONE, Status.CANCELLED)


class Priority(models.IntegerChoices):
    LOW = 1, "low"
    MEDIUM = 2, "medium"
    HIGH = 3, "high"
    CRITICAL = 4, "critical"


class Task(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.TODO)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.MEDIUM)
    due_date = models.DateField(null=True, blank=True)
    assignee = models.CharField(max_length=200, blank=True, default="", help_text='Principal id, e.g. "user:42".')
    labels = ArrayField(models.CharField(max_length=64), blank=True, default=list)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="subtasks")
    dependencies = models.ManyToManyField(
        "self", through="Dependency", symmetrical=False, related_name="dependents", blank=True
    )
    version = models.PositiveIntegerField(default=1, help_text="Bumped on every change (optimistic concurrency).")
    created_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Maintained by apps.tasks.services (never edited by hand) so next_action is one index scan in rank order:
    # how many dependencies are not done/cancelled, and how many subtasks are still open.
    open_dependencies = models.PositiveIntegerField(default=0, editable=False)
    open_subtasks = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=~Q(parent=F("id")), name="tasks_task_not_own_parent"),
            models.CheckConstraint(condition=Q(status__in=Status.values), name="tasks_task_status_known"),
            models.CheckConstraint(condition=Q(priority__in=Priority.values), name="tasks_task_priority_known"),
            models.CheckConstraint(condition=Q(version__gte=1), name="tasks_task_version_positive"),
            models.CheckConstraint(
                condition=Q(open_dependencies__gte=0, open_subtasks__gte=0), name="tasks_task_open_counts_positive"
            ),
        ]
        indexes = [
            # next_action: ready candidates of a project in rank order
            models.Index(
                "project",
                F("priority").desc(),
                F("due_date").asc(nulls_last=True),
                "created_at",
                "id",
                condition=Q(status="todo", open_dependencies=0, open_subtasks=0),
                name="tasks_task_candidate_rank",
            ),
            models.Index(fields=["project", "status"], name="tasks_task_project_status"),
            models.Index(fields=["assignee", "status"], name="tasks_task_assignee_status"),
            GinIndex(fields=["labels"], name="tasks_task_labels"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"


class Dependency(models.Model):
    """`task` cannot start before `depends_on` is resolved (done or cancelled)."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="dependency_edges")
    depends_on = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="dependent_edges")
    created_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "dependencies"
        constraints = [
            models.UniqueConstraint(fields=["task", "depends_on"], name="tasks_dependency_unique_edge"),
            models.CheckConstraint(condition=~Q(task=F("depends_on")), name="tasks_dependency_not_self"),
        ]
        indexes = [models.Index(fields=["depends_on", "task"], name="tasks_dependency_reverse")]

    def __str__(self) -> str:
        return f"#{self.task_id} depends on #{self.depends_on_id}"


class TaskEvent(models.Model):
    """History of a task: who changed what, when. Written by the services that make the change."""

    class Action(models.TextChoices):
        CREATED = "created", "created"
        UPDATED = "updated", "updated"
        CLAIMED = "claimed", "claimed"
        DEPENDENCY_ADDED = "dependency_added", "dependency added"
        DEPENDENCY_REMOVED = "dependency_removed", "dependency removed"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events")
    actor = models.CharField(max_length=200, help_text="Principal id of who made the change.")
    actor_name = models.CharField(max_length=200, blank=True, default="")
    action = models.CharField(max_length=32, choices=Action.choices)
    changes = models.JSONField(default=dict, blank=True, help_text="{field: [old, new]} or edge details.")
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"#{self.task_id} {self.action} by {self.actor}"
