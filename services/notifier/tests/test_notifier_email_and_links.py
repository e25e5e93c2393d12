"""The email of a touch and its signed links (pure)."""

from uuid import uuid4

import pytest

from notifier.links import BadLink, LinkSigner
from notifier.playbooks.models.templates import RenderedEmail
from notifier.touches.models.email_message import MailEnvelope, build_email, message_id

SIGNER = LinkSigner("k" * 32, "https://n.example/")
TOUCH, LEAD = uuid4(), uuid4()
RENDERED = RenderedEmail(subject="Hej", text="Hej Ada", html="<html><body><p>Hej</p></body></html>")


def test_marketing_mail_has_both_parts_the_message_id_and_one_click_unsubscribe() -> None:
    unsubscribe = SIGNER.unsubscribe_url(TOUCH, LEAD, "marketing")
    msg = build_email(
        MailEnvelope(TOUCH, "ada@example.com", "F <f@funnel.example>", "funnel.example", "sv",
                 unsubscribe_url=unsubscribe, open_pixel_url=SIGNER.open_url(TOUCH, LEAD)),
        RENDERED,
    )  # fmt: skip
    assert (
        msg["Message-ID"]
        == f"<touch-{TOUCH}@funnel.example>"
        == message_id(TOUCH, "funnel.example")
    )
    assert msg["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Content-Language"] == "sv"
    parts = {p.get_content_type(): p.get_content() for p in msg.iter_parts()}
    assert parts["text/plain"].strip() == "Hej Ada"
    assert '<img src="https://n.example/t/o/' in parts["text/html"]


def test_transactional_mail_has_no_list_unsubscribe_headers() -> None:
    msg = build_email(
        MailEnvelope(TOUCH, "ada@example.com", "f@funnel.example", "funnel.example", "en"), RENDERED
    )
    assert msg["List-Unsubscribe"] is None
    assert msg["List-Unsubscribe-Post"] is None


def test_links_round_trip_and_refuse_tampering() -> None:
    token = SIGNER.unsubscribe_url(TOUCH, LEAD, "marketing").rsplit("/", 1)[1]
    link = SIGNER.read_unsubscribe(token)
    assert (link.touch_id, link.lead_id, link.target) == (TOUCH, LEAD, "marketing")
    with pytest.raises(BadLink):
        SIGNER.read_unsubscribe(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    with pytest.raises(BadLink):  # another purpose's token is not an unsubscribe token
        SIGNER.read_unsubscribe(SIGNER.open_url(TOUCH, LEAD).rsplit("/", 1)[1])
    with pytest.raises(BadLink):  # another key
        LinkSigner("x" * 32, "https://n.example").read_unsubscribe(token)


def test_a_click_link_redirects_only_where_it_was_signed_to() -> None:
    url = SIGNER.click_url(TOUCH, LEAD, "https://shop.example/cart?x=1")
    link = SIGNER.read_click(url.rsplit("/", 1)[1])
    assert link.target == "https://shop.example/cart?x=1"
    with pytest.raises(ValueError, match="http"):
        SIGNER.click_url(TOUCH, LEAD, "javascript:alert(1)")
