"""Django settings of the test-only django-oauth-toolkit server.

Everything that varies per run comes from the environment, set by ``serve.py``: the database
file, the issuer (which holds the port), the RSA key and the access-token lifetime.
"""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("JWT_DOT_SECRET_KEY", "test-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.support.thirdparty.dot.urls"
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "oauth2_provider",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [str(HERE / "templates")],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("JWT_DOT_DB", ":memory:"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"
LOGIN_URL = "/accounts/login/"
# The demo passwords are public; a slow hash would only slow the tests down.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}


OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    # serve.py generates a fresh key per run and hands it over in its own environment.
    "OIDC_RSA_PRIVATE_KEY": os.environ.get("JWT_DOT_RSA_KEY", ""),
    # Set explicitly so the OIDC document, the RFC 8414 document and the `iss` response
    # parameter (RFC 9207) all name the same issuer.
    "OIDC_ISS_ENDPOINT": os.environ.get("JWT_DOT_ISSUER", ""),
    "OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": [
        "none",
        "client_secret_post",
        "client_secret_basic",
    ],
    "PKCE_REQUIRED": True,
    # RFC 9700 gates on where they do not take away what the tests use (the password grant
    # stays, with DOT's deprecation warning in the server's log): `iss` in the authorization
    # response (RFC 9207, then advertised), no PKCE `plain`, no implicit grant, no access
    # token in a query string.
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "ACCESS_TOKEN_EXPIRE_SECONDS": int(os.environ.get("JWT_DOT_ACCESS_TTL", "300")),
    "REFRESH_TOKEN_EXPIRE_SECONDS": 3 * 24 * 3600,
    "SCOPES": {
        "openid": "OpenID Connect",
        "profile": "Your name",
        "email": "Your e-mail address",
        "groups": "Your groups",
    },
    "DEFAULT_SCOPES": ["openid"],
    "OAUTH2_VALIDATOR_CLASS": "tests.support.thirdparty.dot.validator.ClaimsValidator",
}
