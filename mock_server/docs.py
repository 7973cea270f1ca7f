"""``/docs``: Swagger UI served from the installed package, offline, under a strict CSP.

FastAPI's default page loads Swagger UI from a CDN, so it is blank offline, which is where a
local mock server lives, and it runs an inline script. Here every file comes from the
``swagger-ui-bundle-v2`` package (Swagger UI 5, which reads OpenAPI 3.1) or from this module,
and the Content-Security-Policy allows nothing else: no other origin, no inline script.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles

STATIC = "/docs/static"
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    # Swagger UI sets style attributes from its scripts.
    "style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>jwt-mock-server - API</title>
<link rel="stylesheet" href="{STATIC}/swagger-ui.css">
<link rel="icon" type="image/png" href="{STATIC}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{STATIC}/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""

# An own file, not an inline script, so the CSP needs no 'unsafe-inline' for scripts.
INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
});
"""


def _swagger_ui_path() -> Path:
    import swagger_ui_bundle  # deferred: only the docs need it

    return Path(str(swagger_ui_bundle.swagger_ui_path))


def install_docs(app: FastAPI) -> None:
    async def docs() -> Response:
        return Response(PAGE, media_type="text/html", headers=_HEADERS)

    async def init() -> Response:
        return Response(INIT, media_type="text/javascript", headers=_HEADERS)

    for path, endpoint in (("/docs", docs), ("/docs/init.js", init)):
        app.add_api_route(path, endpoint, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(STATIC, StaticFiles(directory=_swagger_ui_path(), check_dir=False), name="docs")
