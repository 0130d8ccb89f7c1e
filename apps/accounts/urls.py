from django.urls import path

from apps.accounts import views

app_name = "accounts"
urlpatterns = [
    path(".well-known/oauth-protected-resource", views.oauth_protected_resource, name="protected-resource"),
    path(".well-known/oauth-protected-resource/mcp", views.oauth_protected_resource, name="protected-resource-mcp"),
]
