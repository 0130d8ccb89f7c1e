from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin

from apps.gateway import services
from apps.gateway.models import ToolSetting
from apps.gateway.registry import registry


class ToolSettingForm(forms.ModelForm):
    tool = forms.ChoiceField(choices=())

    class Meta:
        model = ToolSetting
        fields = ["tool", "enabled", "rate_limit"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tool_field = self.fields["tool"]
        assert isinstance(tool_field, forms.ChoiceField)  # noqa: S101 - declared as one below
        tool_field.choices = [(t.name, t.name) for t in registry.all()]


@admin.register(ToolSetting)
class ToolSettingAdmin(admin.ModelAdmin):
    form = ToolSettingForm
    list_display = ["tool", "enabled", "rate_limit", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["tool"]

    def save_model(self, request: Any, obj: ToolSetting, form: Any, change: bool) -> None:
        saved = services.tool_setting_update(tool=obj.tool, enabled=obj.enabled, rate_limit=obj.rate_limit)
        obj.pk = saved.pk

    def delete_model(self, request: Any, obj: ToolSetting) -> None:
        services.tool_setting_delete(tool=obj.tool)

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for obj in queryset:
            services.tool_setting_delete(tool=obj.tool)
