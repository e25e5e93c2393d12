"""Signed links (notifier links.py) against forgery: every way to make or bend a token fails.

Pure: no I/O. Links do not expire on purpose (an unsubscribe link must keep working for as
long as the mail sits in an inbox; a replayed open or click counts once, see
test_security_public_stack.py); what they carry cannot be changed, moved to another lead or
touch, or used as another kind of link.
"""

from __future__ import annotations

import base64
import json
import zlib
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from notifier.links import BadLink, LinkSigner

KEY = "a-test-link-signing-key-of-some-length"
BASE = "https://links.example"
SIGNER = LinkSigner(KEY, BASE)
TOUCH, LEAD, OTHER_LEAD = uuid4(), uuid4(), uuid4()


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def readers(signer: LinkSigner = SIGNER) -> list[object]:
    return [signer.read_unsubscribe, signer.read_open, signer.read_click]


def _payload(token: str) -> bytes:
    """The JSON inside an itsdangerous token (readable by anyone: it carries no PII)."""
    body = token.rsplit(".", 1)[0]
    compressed = body.startswith(".")
    raw = base64.urlsafe_b64decode(body.lstrip(".") + "=" * (-len(body.lstrip(".")) % 4))
    return zlib.decompress(raw) if compressed else raw


def test_each_link_reads_back_what_it_was_made_for() -> None:
    unsub = token_of(SIGNER.unsubscribe_url(TOUCH, LEAD, "marketing"))
    assert SIGNER.read_unsubscribe(unsub).lead_id == LEAD
    opened = SIGNER.read_open(token_of(SIGNER.open_url(TOUCH, LEAD)))
    assert (opened.touch_id, opened.lead_id, opened.target) == (TOUCH, LEAD, "")
    click = SIGNER.read_click(token_of(SIGNER.click_url(TOUCH, LEAD, "https://shop.example/a")))
    assert (click.touch_id, click.lead_id, click.target) == (TOUCH, LEAD, "https://shop.example/a")


def test_a_token_carries_ids_and_never_personal_data() -> None:
    token = token_of(SIGNER.unsubscribe_url(TOUCH, LEAD, "marketing"))
    assert json.loads(_payload(token)) == [str(TOUCH), str(LEAD), "marketing"]


def test_a_token_of_one_kind_is_no_token_of_another() -> None:
    tokens = {
        "unsubscribe": token_of(SIGNER.unsubscribe_url(TOUCH, LEAD, "marketing")),
        "open": token_of(SIGNER.open_url(TOUCH, LEAD)).removesuffix(".gif"),
        "click": token_of(SIGNER.click_url(TOUCH, LEAD, "https://shop.example/")),
    }
    for kind, token in tokens.items():
        for other, read in zip(("unsubscribe", "open", "click"), readers(), strict=True):
            if other != kind:
                with pytest.raises(BadLink):
                    read(token)  # type: ignore[operator]


def test_a_token_signed_with_another_key_is_refused() -> None:
    other = LinkSigner("another-key-that-is-not-ours-at-all", BASE)
    with pytest.raises(BadLink):
        SIGNER.read_unsubscribe(token_of(other.unsubscribe_url(TOUCH, LEAD, "marketing")))
    with pytest.raises(BadLink):
        SIGNER.read_click(token_of(other.click_url(TOUCH, LEAD, "https://evil.example/")))


def test_moving_a_link_to_another_lead_or_url_breaks_its_signature() -> None:
    """Re-sign the payload with a changed lead, touch or URL but keep our signature: refused."""
    unsub = token_of(SIGNER.unsubscribe_url(TOUCH, LEAD, "marketing"))
    click = token_of(SIGNER.click_url(TOUCH, LEAD, "https://shop.example/"))
    forger = URLSafeSerializer("guess", salt="funnel-notifier-unsubscribe")
    for payload in (
        [str(TOUCH), str(OTHER_LEAD), "marketing"],
        [str(uuid4()), str(LEAD), "marketing"],
        [str(TOUCH), str(LEAD), "transactional"],
    ):
        forged_body = forger.dumps(payload).rsplit(".", 1)[0]
        with pytest.raises(BadLink):
            SIGNER.read_unsubscribe(f"{forged_body}.{unsub.rsplit('.', 1)[1]}")
    click_forger = URLSafeSerializer("guess", salt="funnel-notifier-click")
    forged_body = click_forger.dumps([str(TOUCH), str(LEAD), "https://evil.example/"])
    with pytest.raises(BadLink):
        SIGNER.read_click(f"{forged_body.rsplit('.', 1)[0]}.{click.rsplit('.', 1)[1]}")


# Not the last character: its low bits are base64 padding, which decoders ignore.
@pytest.mark.parametrize("position", [0, 5, 20, -2, -10])
def test_any_edited_character_is_refused(position: int) -> None:
    token = token_of(SIGNER.click_url(TOUCH, LEAD, "https://shop.example/offer"))
    original = token[position]
    for replacement in "AaZz09-_.":
        if replacement == original:
            continue
        edited = token[:position] + replacement + token[position + 1 :]
        with pytest.raises(BadLink):
            SIGNER.read_click(edited)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.text(max_size=300))
def test_any_text_as_a_token_is_a_bad_link_never_another_error(token: str) -> None:
    for read in readers():
        with pytest.raises(BadLink):
            read(token)  # type: ignore[operator]


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "data:text/html,x", "//evil.example/", "/relative", "mailto:a@b.c"],
)
def test_only_absolute_web_links_can_be_tracked(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        SIGNER.click_url(TOUCH, LEAD, url)


def test_a_signed_token_with_a_non_web_target_is_still_refused() -> None:
    """Even with our key, a click token must name an http(s) URL with a host (defence in
    depth against a future caller that skips click_url's check)."""
    raw = URLSafeSerializer(KEY, salt="funnel-notifier-click")
    for target in ("javascript:alert(1)", "https:///no-host", "//evil.example/"):
        with pytest.raises(BadLink):
            SIGNER.read_click(raw.dumps([str(TOUCH), str(LEAD), target]))
    with pytest.raises(BadLink):
        SIGNER.read_click(raw.dumps([str(TOUCH), "not-a-uuid", "https://shop.example/"]))
    with pytest.raises(BadLink):
        SIGNER.read_open(raw.dumps({"touch": str(TOUCH)}))


def test_uuid_fields_are_checked() -> None:
    assert isinstance(SIGNER.read_open(token_of(SIGNER.open_url(TOUCH, LEAD))).touch_id, UUID)
