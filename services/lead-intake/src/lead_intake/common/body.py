"""Reading a public post: the size limit, then JSON, urlencoded or multipart into one mapping."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import IO
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.formparsers import MultiPartException, MultiPartParser

from funnel_servicekit.problems import Problem, field_problem, invalid
from lead_intake.common.text_rules import nul_path

JSON = "application/json"
URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
FORM_TYPES = (JSON, URLENCODED, MULTIPART)
MAX_FIELDS = 200


@dataclass(frozen=True)
class PostedBody:
    media_type: str
    raw: bytes
    values: dict[str, object]

    @property
    def from_html_form(self) -> bool:
        return self.media_type != JSON


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def too_large(limit: int) -> Problem:
    return field_problem(
        413,
        "Body too large",
        f"the limit is {limit} bytes",
        type_="urn:funnel:problem:too-large",
        field="body",
        message=f"over {limit} bytes",
    )


def malformed(message: str) -> Problem:
    return field_problem(
        400,
        "Malformed body",
        message,
        type_="urn:funnel:problem:malformed",
        field="body",
        message=message,
    )


def unsupported(accepted: tuple[str, ...]) -> Problem:
    names = ", ".join(accepted)
    return field_problem(
        415,
        "Unsupported media type",
        f"send the body as one of: {names}",
        type_="urn:funnel:problem:unsupported-media-type",
        field="content-type",
        message=f"must be one of {names}",
    )


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


# Past this, a spooled body goes to a temporary file instead of memory.
SPOOL_IN_MEMORY = 1024 * 1024


async def read_spooled(request: Request, limit: int) -> tuple[IO[bytes], bytes]:
    """A large body (an import) streamed to a temporary file past 1 MiB, refused with 413 as
    soon as it passes `limit`; with its SHA-256. The caller closes the file."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            digest.update(chunk)
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, digest.digest()


async def read_json(request: Request, limit: int) -> object:
    """A JSON body within the limit (415 for another type, 400 when it does not parse)."""
    if media_type(request) != JSON:
        raise unsupported((JSON,))
    raw = await read_limited(request, limit)
    return parse_json(raw)


def parse_json(raw: bytes) -> object:
    """JSON from untrusted bytes: a 400 for anything that does not parse, never a 500.

    Besides JSONDecodeError, the decoder raises ValueError for integers longer than Python's
    conversion limit (4300 digits) and RecursionError for deep nesting ([[[[...); both fit
    easily under the body size limit.
    """
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
        raise malformed("not valid JSON") from None
    except RecursionError:
        raise malformed("JSON nested too deeply") from None
    try:
        refuse_nul(payload)
    except RecursionError:
        raise malformed("JSON nested too deeply") from None
    return payload


def refuse_nul(payload: object) -> None:
    """A 422 naming the field whose text holds a NUL character or an unpaired surrogate
    (PostgreSQL cannot store them)."""
    found = nul_path(payload)
    if found is not None:
        raise invalid(
            found,
            "must not contain NUL (\\u0000) or unpaired surrogate characters",
            "Invalid text",
        )


async def read_form_post(request: Request, limit: int) -> PostedBody:
    """A form post in any of the accepted encodings, as a flat mapping of fields."""
    kind = media_type(request)
    if kind not in FORM_TYPES:
        raise unsupported(FORM_TYPES)
    raw = await read_limited(request, limit)
    if kind == JSON:
        payload = parse_json(raw)
        if not isinstance(payload, dict):
            raise invalid("body", "must be a JSON object", "Invalid submission")
        return PostedBody(kind, raw, payload)
    if kind == URLENCODED:
        try:
            pairs = parse_qsl(
                raw.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS
            )
        except (UnicodeDecodeError, ValueError):
            raise malformed("not valid UTF-8 urlencoded fields") from None
    else:
        pairs = await _multipart_pairs(request, raw)
    values = _grouped(pairs)
    refuse_nul(values)
    return PostedBody(kind, raw, values)


async def _multipart_pairs(request: Request, raw: bytes) -> list[tuple[str, str]]:
    async def once() -> AsyncGenerator[bytes, None]:
        yield raw

    parser = MultiPartParser(request.headers, once(), max_files=0, max_fields=MAX_FIELDS)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if "files" in str(exc).lower():
            raise invalid("body", "files are not accepted", "Invalid submission") from None
        raise malformed(f"malformed multipart body: {exc}") from None
    return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]


def _grouped(pairs: list[tuple[str, str]]) -> dict[str, object]:
    """Repeated names become lists (which the submission rules refuse as ambiguous)."""
    values: dict[str, object] = {}
    for name, value in pairs:
        if name in values:
            previous = values[name]
            values[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            values[name] = value
    return values
