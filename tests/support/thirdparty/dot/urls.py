"""DOT mounted under /o/ as its tutorial does, so the issuer has a path (http://HOST/o), and its
RFC 8414 document is at the root with that path appended (RFC 8414 §3.1):
/.well-known/oauth-authorization-server/o."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path
from oauth2_provider import urls as dot_urls

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("o/", include(dot_urls)),
    path("", include((dot_urls.metadata_urlpatterns, "root_metadata"))),
]
