"""Run the test-only django-oauth-toolkit server: ``python -m tests.support.thirdparty.dot.serve``.

Binds a free loopback port, generates an RSA key, migrates a fresh SQLite database, creates the
users and applications, and serves Django's ASGI app with uvicorn on the bound socket. Prints one
line ``dot-server listening on http://127.0.0.1:PORT`` once the socket listens.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

READY = "dot-server listening on "
USERS = {"alice": ("wonderland", ["staff", "admin"]), "bob": ("builder", ["staff"])}
# RFC 8252 §7.3: DOT ignores the port of a registered http://127.0.0.1 or http://[::1] URI.
REDIRECT_URIS = "http://127.0.0.1/callback http://[::1]/callback"


def _seed() -> None:
    from django.contrib.auth.models import Group, User
    from oauth2_provider.models import Application

    for name, (password, groups) in USERS.items():
        user = User.objects.create_user(name, f"{name}@example.org", password)
        user.groups.set(Group.objects.get_or_create(name=group)[0] for group in groups)
    common = {"client_type": Application.CLIENT_PUBLIC, "algorithm": Application.RS256_ALGORITHM}
    Application.objects.create(
        name="jwt-desktop",
        client_id="jwt-desktop",
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=REDIRECT_URIS,
        **common,
    )
    Application.objects.create(
        name="jwt-desktop (password)",
        client_id="jwt-desktop-password",
        authorization_grant_type=Application.GRANT_PASSWORD,
        **common,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True, help="SQLite file (created)")
    parser.add_argument("--access-ttl", type=int, default=300, help="seconds")
    parser.add_argument(
        "--template",
        help="a migrated and seeded database to copy (made when missing): migrations cost seconds",
    )
    args = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="tests.support.thirdparty.dot.settings",
        JWT_DOT_DB=args.db,
        JWT_DOT_ISSUER=f"{url}/o",
        JWT_DOT_ACCESS_TTL=str(args.access_ttl),
        JWT_DOT_RSA_KEY=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )
    import django
    from django.core.management import call_command

    template = Path(args.template) if args.template else None
    if template is not None and template.exists():
        shutil.copyfile(template, args.db)
    django.setup()
    if template is None or not template.exists():
        call_command("migrate", verbosity=0)
        _seed()
        if template is not None:
            from django.db import connection

            connection.close()
            partial = template.with_name(f"{template.name}.{os.getpid()}")
            shutil.copyfile(args.db, partial)
            partial.replace(template)  # atomic: a concurrent start copies a whole file

    import uvicorn
    from django.core.asgi import get_asgi_application

    config = uvicorn.Config(
        get_asgi_application(), lifespan="off", log_level="warning", access_log=False
    )
    sock.listen(128)
    print(READY + url, flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
