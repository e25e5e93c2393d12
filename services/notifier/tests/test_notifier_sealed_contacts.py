"""The contact a lead event gives the notifier: v1 in the clear, v2 opened with the lead's key
(by the contact resolver, from the sealed data the consumer left waiting).

The key service is lead-intake's HTTP API; here an httpx MockTransport plays it (no I/O).
"""

import json
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
from notifier.people.service import open_contact, open_contacts

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


UNKNOWN = {"type": "urn:funnel:problem:not-found", "title": "Unknown lead", "status": 404}


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(404, json=UNKNOWN), httpx.Response(410, json={"title": "erased"})],
    ids=["unknown", "erased"],
)
async def test_an_erased_or_unknown_lead_gives_no_contact(answer: httpx.Response) -> None:
    lead = uuid4()
    assert await _contact(_captured_v2(lead, new_data_key()), _keys(answer)) is None


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(404, json={"title": "gone"}), httpx.Response(404, text="Not Found")],
    ids=["other-problem", "not-json"],
)
async def test_a_bare_404_is_refused_not_taken_for_an_unknown_lead(answer: httpx.Response) -> None:
    """A 404 that is not intake's not-found problem (a wrong URL, a proxy) says nothing of
    the lead: the row is tried again later, not closed as a person with no address."""
    with pytest.raises(KeyServiceRefused):
        await _contact(_captured_v2(uuid4(), new_data_key()), _keys(answer))


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


def _intake(
    keys: dict[UUID, bytes], *, erased: frozenset[UUID] = frozenset(), batch: bool = True
) -> tuple[DataKeys, list[httpx.Request]]:
    """lead-intake's two key calls over these keys (an erased lead has none); `batch=False`:
    an older intake without `POST /v1/data-keys/lookup` (404)."""
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/data-keys/lookup" and batch:
            asked = [UUID(i) for i in json.loads(request.content)["lead_ids"]]
            return httpx.Response(
                200,
                json={
                    "keys": [
                        {"lead_id": str(i), "key": key_to_text(keys[i])}
                        for i in asked
                        if i in keys and i not in erased
                    ],
                    "erased": [str(i) for i in asked if i in erased],
                    "unknown": [str(i) for i in asked if i not in keys and i not in erased],
                },
            )
        lead = request.url.path.split("/")[3] if request.method == "GET" else ""
        if lead and UUID(lead) in keys and UUID(lead) not in erased:
            return httpx.Response(200, json={"lead_id": lead, "key": key_to_text(keys[UUID(lead)])})
        if lead and UUID(lead) in erased:
            return httpx.Response(410, json={"title": "erased"})
        return httpx.Response(404, json=UNKNOWN)

    return DataKeys("http://intake.test", "fk_notifier", 1.0, httpx.MockTransport(respond)), seen


def _people(*names: str) -> tuple[list[PendingContact], dict[UUID, bytes]]:
    keys = {uuid4(): new_data_key() for _ in names}
    batch = [
        _pending(
            lead_captured_v2(
                PersonalData(email=f"{name}@example.com", first_name=name),
                key=key,
                lead_id=lead,
                captured_at=NOW,
            )
        )
        for name, (lead, key) in zip(names, keys.items(), strict=True)
    ]
    return batch, keys


def _names(opened: list[PersonalData | BaseException | None]) -> list[str | None]:
    return [p.first_name if isinstance(p, PersonalData) else None for p in opened]


@pytest.mark.parametrize("batch", [True, False], ids=["batch-call", "older-intake"])
async def test_a_batch_of_contacts_opens_with_one_key_call(batch: bool) -> None:
    """One `POST /v1/data-keys/lookup` for the whole batch (a lead asked once, however many
    rows it has); an intake without it (404) is asked one lead at a time, the same answers."""
    people, keys = _people("ada", "bo", "cy")
    gone = people[1].lead_id
    twice = [*people, people[0]]
    client, seen = _intake(keys, erased=frozenset({gone}), batch=batch)

    opened = await open_contacts(twice, client, key_requests=2)

    assert _names(opened) == ["ada", None, "cy", "ada"]
    assert opened[1] is None  # erased: no contact, not an error
    posted = [r for r in seen if r.method == "POST"]
    assert len(posted) == 1
    assert json.loads(posted[0].content)["lead_ids"] == [str(p.lead_id) for p in people]
    got = sorted(r.url.path for r in seen if r.method == "GET")
    assert got == ([] if batch else sorted(f"/v1/leads/{p.lead_id}/data-key" for p in twice))
    assert client.batches is batch
    again = await open_contacts(people, client, key_requests=2)  # the older intake: no retry
    assert len([r for r in seen if r.method == "POST"]) == 1 + batch
    assert _names(again) == ["ada", None, "cy"]


async def test_a_batch_call_asks_at_most_500_leads_each() -> None:
    people, keys = _people(*(f"p{i}" for i in range(501)))
    client, seen = _intake(keys)
    opened = await open_contacts(people, client, key_requests=4)
    assert _names(opened) == [f"p{i}" for i in range(501)]
    assert [len(json.loads(r.content)["lead_ids"]) for r in seen] == [500, 1]


async def test_a_row_whose_key_does_not_open_it_fails_alone() -> None:
    people, keys = _people("ada", "bo")
    wrong = dict(keys)
    wrong[people[0].lead_id] = new_data_key()
    client, _ = _intake(wrong)
    opened = await open_contacts(people, client, key_requests=1)
    assert isinstance(opened[0], SealError)
    assert _names(opened) == [None, "bo"]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.ConnectError("refused"), KeyServiceUnavailable),
        (httpx.Response(503), KeyServiceUnavailable),
        (httpx.Response(403), KeyServiceRefused),
        (httpx.Response(200, json={"keys": [], "erased": [], "unknown": []}), KeyServiceRefused),
        (httpx.Response(200, json={"keys": [{"lead_id": "x"}]}), KeyServiceRefused),
    ],
    ids=["down", "503", "refused", "a-lead-left-out", "not-keys"],
)
async def test_a_failed_batch_call_is_every_row_s_error(
    answer: httpx.Response | Exception, error: type[Exception]
) -> None:
    """Unavailable: each row is tried again later; refused or a wrong answer: the same as a
    refused credential. No row is stored as opened."""
    people, _ = _people("ada", "bo")
    opened = await open_contacts(people, _keys(answer), key_requests=2)
    assert [type(o) for o in opened] == [error, error]


def test_smtp_replies_lose_the_addresses_they_echo() -> None:
    reply = "5.1.1 <ada.l+x@example.com>: Recipient address rejected; see ada@example.com"
    assert without_addresses(reply) == (
        "5.1.1 <<address>>: Recipient address rejected; see <address>"
    )
    assert without_addresses("4.2.2 mailbox full") == "4.2.2 mailbox full"
