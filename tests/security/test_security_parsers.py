"""The payload parsers behind the public endpoints, fed anything (hypothesis): they accept,
or refuse with their own typed error naming a field; they never raise anything else (which
the service would answer as a 500), and what they accept carries no line breaks into
headers or CRLF into identities.

Pure: no I/O. The HTTP side of the same inputs is tests/security/test_security_public_stack.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from funnel_servicekit.problems import Problem
from lead_intake.common.body import parse_json, read_form_post
from lead_intake.common.normalize import (
    normalize_email,
    normalize_name,
    normalize_phone,
    truncate_ip,
)
from lead_intake.forms.models import FieldSpec, FormSettings
from lead_intake.leads.models import SubmissionInvalid
from lead_intake.submissions.models import parse_submission
from lead_intake.webhooks.models import (
    PayloadInvalid,
    generic_lead,
    google_ads_lead,
    meta_lead_ids,
    meta_values,
    typeform_lead,
)

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
MULTIPART_X = "multipart/form-data; boundary=x"
FAST = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
LINE_BREAKS = ("\r", "\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")

# Text biased toward what attackers send: injection shapes, control characters, odd Unicode.
NASTY = st.sampled_from(
    [
        "a@b.c\r\nBcc: x@y.z",
        "Ada\r\nBcc: x@y.z",
        "Ada\nSubject: hi",
        "'; DROP TABLE leads; --",
        '" OR 1=1 --',
        "{{7*7}}",
        "${7*7}",
        "{% for x in range(10**9) %}x{% endfor %}",
        "<script>alert(1)</script>",
        "\x00",
        "\ud7ff\ue000\uffff",
        "\u202e\u200b",
        "ß" * 300,
        "9" * 5000,
    ]
)
TEXT = st.one_of(st.text(max_size=60), NASTY)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON_VALUES = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "email", "phone", "first_name", "last_name", "full_name", "utm_source", "consent",
        "locale", "time_zone", "visitor_id", "landing_page", "referrer", "website", "budget",
        "plan", "object", "entry", "changes", "field", "value", "leadgen_id", "field_data",
        "name", "values", "event_type", "form_response", "token", "answers", "hidden", "type",
        "ref", "choice", "choices", "labels", "lead_id", "user_column_data", "column_id",
        "string_value", "google_key", "id",
    ]
)  # fmt: skip
# Objects built from the keys the parsers look for, so the fuzz reaches past the first check.
SHAPED = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(KEYS, TEXT), inner, max_size=6)
    ),
    max_leaves=30,
)
FORM = FormSettings(
    allow_unknown_fields=True,
    default_phone_region="SE",
    fields=(
        FieldSpec(name="plan", type="select", options=("basic", "pro")),
        FieldSpec(name="seats", type="number"),
        FieldSpec(name="start", type="date"),
        FieldSpec(name="site", type="url"),
        FieldSpec(name="agree", type="checkbox"),
    ),
    field_map={"a.b": "email", "field_data": "first_name", "0": "plan", "ref": "last_name"},
)


def no_line_breaks(value: str | None) -> bool:
    return value is None or not any(c in value for c in LINE_BREAKS)


def check_accepted(values: dict[str, object]) -> None:
    """Whatever a platform parser gives is checked by the form rules like a form post."""
    try:
        sub = parse_submission(values, FORM, now=NOW)
    except SubmissionInvalid as exc:
        errors = exc.errors
    else:
        errors = []
        for value in (sub.email, sub.phone, sub.first_name, sub.last_name, sub.locale):
            assert no_line_breaks(value), value
    assert all(isinstance(e["field"], str) and e["message"] for e in errors)


# -- the body reader: JSON, urlencoded, multipart ---------------------------------------


def _request(body: bytes, content_type: str) -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return Request(scope, receive)


def _read(body: bytes, content_type: str, limit: int = 65536) -> dict[str, object] | Problem:
    try:
        return asyncio.run(read_form_post(_request(body, content_type), limit)).values
    except Problem as problem:
        return problem


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"[" * 10_000 + b"]" * 10_000, 400),  # 10k levels: a RecursionError in json
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400),
        (b'{"email": ' + b"9" * 5000 + b"}", 400),  # over Python's int-from-text limit
        (b'{"email": "a@b.c"}\xff', 400),  # not UTF-8
        (b'{"email": "\xc0\xaf@b.c"}', 400),  # overlong UTF-8 for "/"
        (b'{"email": "\xed\xa0\x80@b.c"}', 422),  # an encoded surrogate: unstorable
        (b'{"email": "a\\u0000@b.c"}', 422),  # NUL, named
        (b'{"first_name": "\\ud800"}', 422),  # a lone surrogate: unstorable
        (b"[1, 2]", 422),
        (b"1e999999", 422),  # infinity: not an object
    ],
)
def test_hostile_json_is_a_client_error(body: bytes, status: int) -> None:
    got = _read(body, "application/json")
    assert (got.status if isinstance(got, Problem) else 200) == status, got


def test_neutralised_encodings_never_reach_an_identity() -> None:
    """Percent-encoded overlong UTF-8 decodes to U+FFFD, never to the character it imitates;
    a cut multipart body reads as no fields, which the form rules refuse."""
    overlong = _read(b"email=a%C0%AF%40b.c", "application/x-www-form-urlencoded")
    assert overlong == {"email": "a\ufffd\ufffd@b.c"}
    cut = _read(b'--x\r\nContent-Disposition: form-data; name="email"\r\n\r\nab', MULTIPART_X)
    assert cut == {}
    assert isinstance(cut, dict)
    with pytest.raises(SubmissionInvalid, match="email"):
        parse_submission(cut, FORM, now=NOW)
    assert isinstance(overlong, dict)
    sub = parse_submission(overlong, FORM, now=NOW)  # an internationalised address, no "/"
    assert sub.email == "a\ufffd\ufffd@b.c"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"email=\xff\xfe", "application/x-www-form-urlencoded", 400),
        (b"email=a%00b%40c.d", "application/x-www-form-urlencoded", 422),
        (b"&".join(b"f%d=1" % i for i in range(500)), "application/x-www-form-urlencoded", 400),
        (b"garbage", "multipart/form-data", 400),  # no boundary
        (
            b'--x\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nhi\r\n--x--\r\n',
            MULTIPART_X,
            422,
        ),
        (b"x" * 70_000, "application/json", 413),
        (b"{}", "text/plain", 415),
        (b"{}", "application/json\r\nX-Evil: 1", 415),
    ],
)  # fmt: skip
def test_hostile_form_bodies_are_client_errors(body: bytes, content_type: str, status: int) -> None:
    got = _read(body, content_type)
    assert isinstance(got, Problem), got
    assert got.status == status, (got.status, got.detail)


@FAST
@given(
    st.binary(max_size=400),
    st.sampled_from(["application/json", "application/x-www-form-urlencoded", MULTIPART_X]),
)
def test_any_bytes_in_any_form_encoding_are_read_or_refused_as_4xx(
    body: bytes, content_type: str
) -> None:
    got = _read(body, content_type)
    if isinstance(got, Problem):
        assert 400 <= got.status < 500
    else:
        assert isinstance(got, dict)


@FAST
@given(st.dictionaries(st.one_of(KEYS, TEXT), JSON_VALUES, max_size=8))
def test_any_json_object_is_a_submission_or_named_field_errors(values: dict[str, Any]) -> None:
    raw = json.dumps(values).encode()
    got = _read(raw, "application/json")
    if isinstance(got, Problem):
        assert got.status in (400, 422)
        return
    check_accepted(got)


def test_parse_json_refuses_what_json_cannot_hold_for_us() -> None:
    with pytest.raises(Problem) as deep:
        parse_json(b"[" * 50_000)
    assert deep.value.status == 400
    with pytest.raises(Problem) as big:
        parse_json(b"1" * 10_000)
    assert big.value.status == 400


# -- identities ---------------------------------------------------------------------------


@FAST
@given(TEXT)
def test_normalizers_accept_or_raise_value_error_and_never_keep_line_breaks(raw: str) -> None:
    for normalize in (normalize_email, lambda v: normalize_phone(v, "SE"), normalize_name):
        try:
            result = normalize(raw)
        except ValueError:
            continue
        assert no_line_breaks(result), (raw, result)
    assert truncate_ip(raw) is None or "/" in str(truncate_ip(raw))


@pytest.mark.parametrize(
    "email",
    [
        "a@b.c\r\nBcc: x@y.z",
        "a@b.c\nBcc: x@y.z",
        "a@b.c%0d%0aBcc:x@y.z",
        '"a\r\nBcc: x@y.z"@b.c',
        "a@b.c,x@y.z",
        "a@b.c; x@y.z",
        "Ada <a@b.c>",
        "a@[127.0.0.1]",
    ],
)
def test_header_shaped_emails_are_refused(email: str) -> None:
    with pytest.raises(ValueError, match="not a valid email"):
        normalize_email(email)


def test_a_crlf_name_is_neutralised_to_one_line() -> None:
    assert normalize_name("Ada\r\nBcc: x@y.z") == "Ada Bcc: x@y.z"
    assert normalize_name("Ada\u2028Bcc: x@y.z\x85") == "Ada Bcc: x@y.z"


# -- ad platforms and webhooks ------------------------------------------------------------


def _platform_outcome(parse: Any, payload: Any) -> None:
    """A parser either gives values that the form rules then check like a form post, or lead
    ids, or refuses with the path of the field at fault inside the payload it was given."""
    refused: PayloadInvalid | None = None
    try:
        values = parse(payload)
    except PayloadInvalid as exc:
        refused = exc
    if refused is not None:
        assert isinstance(refused.field, str)
        assert refused.field
        assert str(refused).startswith(f"{refused.field}: "), refused
        _assert_points_into(payload, refused.field)
        return
    if isinstance(values, dict):
        assert all(isinstance(k, str) for k in values), values
        check_accepted(values)
    else:  # Meta's notifications: (lead id, change) pairs
        assert isinstance(values, list), values
        for lead_id, change in values:
            assert isinstance(lead_id, str), lead_id
            assert lead_id
            assert isinstance(change, dict), change


def _assert_points_into(payload: Any, field: str) -> None:
    """Every step of `field` but the last exists in `payload` (the last may be what is
    missing); a path of one step names a top-level member or the body itself."""
    here = payload
    for step in field.split(".")[:-1]:
        if isinstance(here, dict) and step in here:
            here = here[step]
        elif isinstance(here, list) and step.isdigit() and int(step) < len(here):
            here = here[int(step)]
        else:
            raise AssertionError(f"{field!r} does not point into {payload!r}")


@FAST
@given(SHAPED)
def test_meta_payloads_are_parsed_or_refused_by_field(payload: Any) -> None:
    _platform_outcome(meta_lead_ids, payload)
    _platform_outcome(meta_lead_ids, {"object": "page", "entry": payload})
    _platform_outcome(lambda p: meta_values(p, FORM.field_map), payload)
    _platform_outcome(lambda p: meta_values(p, {}), {"field_data": payload})


@FAST
@given(SHAPED)
def test_typeform_payloads_are_parsed_or_refused_by_field(payload: Any) -> None:
    _platform_outcome(lambda p: typeform_lead(p, FORM.field_map).values, payload)
    wrapped = {"event_type": "form_response", "form_response": {"token": "t", "answers": payload}}
    _platform_outcome(lambda p: typeform_lead(p, FORM.field_map).values, wrapped)
    hidden = {"event_type": "form_response", "form_response": {"token": "t", "hidden": payload}}
    _platform_outcome(lambda p: typeform_lead(p, {}).values, hidden)


@FAST
@given(SHAPED)
def test_google_and_generic_payloads_are_parsed_or_refused_by_field(payload: Any) -> None:
    _platform_outcome(lambda p: google_ads_lead(p, FORM.field_map)[0].values, payload)
    columns = {"lead_id": "g1", "user_column_data": payload}
    _platform_outcome(lambda p: google_ads_lead(p, {})[0].values, columns)
    _platform_outcome(lambda p: generic_lead(p, FORM.field_map).values, payload)
    _platform_outcome(lambda p: generic_lead(p, FORM.field_map).values, {"id": 1, "a": payload})


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"object": "page", "entry": ["x"]}, "entry.0"),
        ({"object": "page", "entry": {"changes": []}}, "entry"),
        ({"object": "page", "entry": 5}, "entry"),
        ({"object": "page", "entry": [{"changes": "leadgen"}]}, "entry.0.changes"),
        ({"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": {"leadgen_id": []}}]}]}, "entry.0.changes.0.value.leadgen_id"),  # noqa: E501
        ({"object": "user", "entry": []}, "object"),
    ],
)  # fmt: skip
def test_meta_notifications_of_the_wrong_shape_name_the_field(payload: Any, field: str) -> None:
    with pytest.raises(PayloadInvalid) as refused:
        meta_lead_ids(payload)
    assert refused.value.field == field


def test_meta_notifications_give_the_lead_ids_of_leadgen_changes_only() -> None:
    change = {"field": "leadgen", "value": {"leadgen_id": "123"}}
    other = {"field": "feed", "value": {}}
    assert meta_lead_ids({"object": "page", "entry": [{"changes": [other]}]}) == []
    got = meta_lead_ids({"object": "page", "entry": [{"changes": [change, other]}]})
    assert got == [("123", {"leadgen_id": "123"})]
