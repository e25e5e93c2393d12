"""The import runner: works through the rows of waiting imports, one batch per transaction,
the next batch made ready while one is written (imports.service.run_import).

Imports survive restarts (their rows wait in `import_rows`); several replicas share the work
(each batch locks its import with SKIP LOCKED)."""

from __future__ import annotations

from funnel_servicekit.loops import PollLoop, RetryLater
from funnel_servicekit.problems import Problem
from lead_intake.imports import service
from lead_intake.runtime import IntakeRuntime


class ImportRunner(PollLoop):
    def __init__(self, runtime: IntakeRuntime) -> None:
        super().__init__(
            "import-runner", poll_seconds=runtime.settings.import_poll_seconds, batch_size=1
        )
        self.runtime = runtime

    async def step(self) -> int:
        try:
            # The whole import, batch after batch; a stop ends it after the batch being written.
            return await service.run_import(self.runtime, stopping=lambda: self.stopping)
        except Problem as exc:
            if exc.status == 503:  # stage-tracker away: the stages cannot be checked yet
                raise RetryLater(str(exc)) from exc
            raise
