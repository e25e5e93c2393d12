"""`GET /v1/forms/{form_id}/embed.js`: the script a site adds to its plain HTML form."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from fastapi import APIRouter, Request, Response

from lead_intake.api.context import FormId, intake, unknown_form

router = APIRouter(tags=["public"])
TEMPLATE = Path(__file__).resolve().parent.parent / "static" / "embed.js"


@functools.cache
def _template() -> str:
    return TEMPLATE.read_text()


def render_embed(config: dict[str, object]) -> str:
    """The script with the form's settings in it (safe inside a <script> element too)."""
    literal = json.dumps(config).replace("<", "\\u003c")
    return _template().replace("__FUNNEL_CONFIG__", literal)


@router.get(
    "/v1/forms/{form_id}/embed.js",
    response_class=Response,
    responses={200: {"content": {"text/javascript": {}}}},
)
async def embed_script(form_id: FormId, request: Request) -> Response:
    """The form's embed script: UTM and visitor fields, submit in place, the inline message."""
    ctx = intake(request)
    form = await ctx.form(form_id)
    if form is None:
        raise unknown_form(form_id)
    base = (ctx.settings.public_base_url or str(request.base_url)).rstrip("/")
    script = render_embed(
        {
            "formId": form.id,
            "submitUrl": f"{base}/v1/forms/{form.id}/submissions",
            "activitiesUrl": f"{base}/v1/activities",
            "publicKey": form.public_key,
            "message": form.settings.thank_you_message,
            "honeypot": form.settings.honeypot_field,
            "trackPageViews": True,
        }
    )
    return Response(
        script,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
    )
