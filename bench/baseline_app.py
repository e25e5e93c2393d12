"""The throughput baseline: a bare FastAPI app served exactly as the services serve theirs.

One POST endpoint on the same path as lead-intake's form endpoint: it parses a small JSON body
into a pydantic model and answers 202 with a small JSON body. No database, no outbox.
`python bench/baseline_app.py --port N` runs it with the same `uvicorn.run` arguments that
funnel_servicekit.cli uses for `serve` (one process, no access log, default loop and HTTP).
"""

from __future__ import annotations

import argparse
import uuid

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI(title="bench-baseline")


class Submission(BaseModel):
    email: str


class Accepted(BaseModel):
    lead_id: str


@app.post("/v1/forms/{form_id}/submissions", status_code=202)
async def submit(form_id: str, body: Submission) -> Accepted:
    return Accepted(lead_id=str(uuid.uuid4()))


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ok"}


def server_arguments() -> argparse.ArgumentParser:
    """`--host` and `--port`, which every baseline server takes."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser


def serve(served: FastAPI, args: argparse.Namespace) -> None:
    """Serve as `funnel_servicekit.cli serve` does: one process, no access log."""
    uvicorn.run(
        served,
        host=args.host,
        port=args.port,
        log_config=None,
        timeout_graceful_shutdown=20,
        access_log=False,
    )


def main() -> None:
    serve(app, server_arguments().parse_args())


if __name__ == "__main__":
    main()
