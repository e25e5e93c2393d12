"""The contact a lead event gives the notifier: v1 in the clear, v2 opened with the lead's key
(by the contact resolver, from the sealed data the consumer left waiting).

The key service is lead-intake's HTTP API; here an httpx MockTransport plays it (no I/O).
"""

from datetime import UTC, datetime
from uuid import UUID, uuid4

import httpx
import pytest

from funnel_contracts import LeadCapturedV2, LeadUpdatedV2, examples
from funnel_contracts.examples import lead_captured_v2
from funnel_contracts.lead_reader import lead_details
from funnel_contracts.sealed import PersonalData, SealError, key_to_text, new_data_key
from notifier.channels.smtp import without_addresses
from notifier.people.data_keys import DataKeys, KeyServiceRefused, KeyServiceUnavailable
from notifier.people.models import PendingContact
from notifier.people.service import open_contact

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
ADA = PersonalData(email="ada@example.com", phone="+46701234567", first_name="Ada")


def _captured_v2(
    lead_id: UUID, key: bytes, event_type: str = LeadCapturedV2.event_type
) -> LeadCapturedV2:
    return lead_captured_v2(ADA, key=key, lead_id=lead_id, event_type=event_type, captured_at=NOW)


def _pending(event: LeadCapturedV2) -> PendingContact:
    """What the consumer records of a v2 event (the sealed data, unopened)."""
    details = lead_details(event)
    assert details is not None
    assert details.sealed is not None
    assert details.needs_key
    return PendingContact(1, event.lead_id, event.event_type, details.sealed, None, None, 1)


async def _contact(event: LeadCapturedV2, keys: DataKeys) -> tuple[str | None, str | None] | None:
    person = await open_contact(_pending(event), keys)
    return None if person is None else (person.email, person.first_name)


def _keys(answer: httpx.Response | Exception, seen: list[httpx.Request] | None = None) -> DataKeys:
    def respond(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return DataKeys("http://intake.test", "fk_notifier", 1.0, httpx.MockTransport(respond))


def test_a_v1_event_gives_its_plain_contact_without_asking_for_a_key() -> None:
    event = examples.lead_captured(email="grace@example.com", first_name="Grace", captured_at=NOW)
    details = lead_details(event)
    assert details is not None
    assert not details.needs_key
    person = details.person(None)
    assert person is not None
    assert (person.email, person.first_name) == ("grace@example.com", "Grace")


async def test_a_v2_event_is_opened_with_the_key_intake_gives() -> None:
    lead, key = uuid4(), new_data_key()
    seen: list[httpx.Request] = []
    keys = _keys(httpx.Response(200, json={"lead_id": str(lead), "key": key_to_text(key)}), seen)
    assert await _contact(_captured_v2(lead, key), keys) == ("ada@example.com", "Ada")
    [request] = seen
    assert request.url.path == f"/v1/leads/{lead}/data-key"
    assert request.headers["authorization"] == "Bearer fk_notifier"


async def test_the_key_client_works_again_after_it_was_closed() -> None:
    """The contact resolver closes it when a run ends; a run after a crash asks again."""
    lead, key = uuid4(), new_data_key()
    seen: list[httpx.Request] = []
    keys = _keys(httpx.Response(200, json={"lead_id": str(lead), "key": key_to_text(key)}), seen)
    assert await keys.key_of(lead) == key
    await keys.aclose()
    assert await keys.key_of(lead) == key
    await keys.aclose()
    assert len(seen) == 2


@pytest.mark.parametrize("status", [404, 410])
async def test_an_erased_or_unknown_lead_gives_no_contact(status: int) -> None:
    lead = uuid4()
    keys = _keys(httpx.Response(status, json={"title": "gone"}))
    assert await _contact(_captured_v2(lead, new_data_key()), keys) is None


async def test_a_key_that_does_not_open_the_event_is_refused() -> None:
    lead = uuid4()
    keys = _keys(httpx.Response(200, json={"key": key_to_text(new_data_key())}))
    with pytest.raises(SealError):
        await _contact(_captured_v2(lead, new_data_key()), keys)


async def test_a_blob_sealed_for_another_event_type_is_refused() -> None:
    lead, key = uuid4(), new_data_key()
    keys = _keys(httpx.Response(200, json={"key": key_to_text(key)}))
    moved = _captured_v2(lead, key, event_type=LeadUpdatedV2.event_type)
    with pytest.raises(SealError):
        await _contact(moved, keys)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(503),
        httpx.Response(429),
    ],
    ids=["connect", "timeout", "503", "429"],
)
async def test_intake_down_is_transient(answer: httpx.Response | Exception) -> None:
    with pytest.raises(KeyServiceUnavailable) as raised:
        await _contact(_captured_v2(uuid4(), new_data_key()), _keys(answer))
    assert isinstance(raised.value, ConnectionError)  # the resolver tries the row again


@pytest.mark.parametrize("status", [401, 403, 400])
async def test_a_refused_credential_is_not_transient(status: int) -> None:
    with pytest.raises(KeyServiceRefused):
        await _contact(_captured_v2(uuid4(), new_data_key()), _keys(httpx.Response(status)))


async def test_without_a_key_service_credential_v2_cannot_be_read() -> None:
    no_credential = DataKeys("http://intake.test", None, 1.0)
    with pytest.raises(KeyServiceRefused, match="FUNNEL_INTAKE_API_KEY"):
        await no_credential.key_of(uuid4())


def test_smtp_replies_lose_the_addresses_they_echo() -> None:
    reply = "5.1.1 <ada.l+x@example.com>: Recipient address rejected; see ada@example.com"
    assert without_addresses(reply) == (
        "5.1.1 <<address>>: Recipient address rejected; see <address>"
    )
    assert without_addresses("4.2.2 mailbox full") == "4.2.2 mailbox full"
