"""The projection's write statement notifies the snapshot's streams only when a batch changed
what the snapshot shows (its stage counts or stage positions)."""

from __future__ import annotations

from reporting.projection.store import INLINE, write_sql


def _sql(tables: tuple[str, ...], *, stages: bool = False) -> str:
    return write_sql(tables, stages, True, True, False, frozenset(INLINE))


def test_a_batch_that_moved_stage_counts_notifies_at_its_commit() -> None:
    sql = _sql(("stage_counts", "stage_stays"))
    assert sql.rstrip().endswith("SELECT pg_notify(current_schema() || '_changed', '')")


def test_a_batch_that_changed_stage_positions_notifies() -> None:
    assert "pg_notify(current_schema()" in _sql((), stages=True)


def test_a_batch_that_only_wrote_states_timeline_or_other_tables_does_not() -> None:
    assert "pg_notify" not in _sql(())
    assert "pg_notify" not in _sql(("stage_stays", "touch_effect"))
