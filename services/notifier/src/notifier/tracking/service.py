"""The public links' use cases: each changes state once, however often the link is used."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from funnel_contracts import ConsentChanged, TouchClicked, TouchOpened
from funnel_servicekit.unit_of_work import Transactions, UnitOfWork
from notifier.links import Link
from notifier.people import store as people_store
from notifier.touches import store as touches_store


async def unsubscribe(tx: Transactions, link: Link, source: str) -> None:
    """Withdraw the link's consent category, suppress its waiting touches, and emit
    funnel.consent.changed once (nothing for an erased person)."""
    await tx.run(lambda uow: _unsubscribe(uow, link, source))


async def _unsubscribe(uow: UnitOfWork, link: Link, source: str) -> None:
    conn, now = uow.conn, datetime.now(UTC)
    if await people_store.is_erased(conn, link.lead_id):
        return
    changed = await people_store.set_consents(
        conn, link.lead_id, [link.target], granted=False, source=source, at=now
    )
    await touches_store.cancel_category(
        conn, link.lead_id, link.target, f"unsubscribed from {link.target}"
    )
    if changed:
        await uow.emit(
            ConsentChanged(
                lead_id=link.lead_id,
                category=link.target,
                granted=False,
                source=source,
                touch_id=link.touch_id,
                changed_at=now,
            )
        )


async def record_open(tx: Transactions, touch_id: UUID, lead_id: UUID) -> None:
    """The first open of a touch emits funnel.touch.opened."""
    await tx.run(lambda uow: _record_open(uow, touch_id, lead_id))


async def _record_open(uow: UnitOfWork, touch_id: UUID, lead_id: UUID) -> None:
    if await touches_store.first_engagement(uow.conn, touch_id, "open"):
        await uow.emit(TouchOpened(lead_id=lead_id, touch_id=touch_id, opened_at=datetime.now(UTC)))


async def record_click(tx: Transactions, link: Link) -> None:
    """The first click of each link in a touch emits funnel.touch.clicked."""
    await tx.run(lambda uow: _record_click(uow, link))


async def _record_click(uow: UnitOfWork, link: Link) -> None:
    if await touches_store.first_engagement(uow.conn, link.touch_id, "click", link.target):
        await uow.emit(
            TouchClicked(
                lead_id=link.lead_id,
                touch_id=link.touch_id,
                url=link.target,
                clicked_at=datetime.now(UTC),
            )
        )
