"""The embed script's template and how the form's settings go into it (pure)."""

import json

from lead_intake.forms.service import render_embed


def test_the_config_is_injected_once_and_cannot_close_the_script_element() -> None:
    script = render_embed({"message": "</script><script>alert(1)</script>", "formId": "demo"})
    assert "__FUNNEL_CONFIG__" not in script
    assert "</script>" not in script
    start = script.index("var config = ") + len("var config = ")
    config = json.loads(script[start : script.index(";\n", start)])
    assert config["message"] == "</script><script>alert(1)</script>"


def test_the_script_fills_the_tracking_fields_and_submits_in_place() -> None:
    script = render_embed({})
    for name in ("utm_source", "landing_page", "referrer", "visitor_id", "Idempotency-Key"):
        assert name in script
    assert "preventDefault" in script
