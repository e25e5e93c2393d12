"""Browser-test helpers for pages served under a Content-Security-Policy (decision 0095).

`collect_errors`: what a page did wrong, for a test to assert empty: uncaught exceptions, and
what the page's policy refused (a script, a style, a call or an image it does not allow: the
browser says so on the console).

`wait_for_js`: Playwright's `wait_for_function` polls by evaluating a string inside the page,
which a policy without 'unsafe-eval' refuses. This polls with `page.evaluate` instead, which
the browser's debugging protocol runs whatever the page's policy says.
"""

from __future__ import annotations

import asyncio
import time

from playwright.async_api import ConsoleMessage, Page

CSP_REFUSAL = "Content Security Policy"


def collect_errors(page: Page, into: list[str] | None = None) -> list[str]:
    """The list `page`'s errors are appended to from now on (`into`, or a new one)."""
    errors: list[str] = [] if into is None else into
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def refused(message: ConsoleMessage) -> None:
        if CSP_REFUSAL in message.text:
            errors.append(message.text)

    page.on("console", refused)
    return errors


async def wait_for_js(page: Page, expression: str, timeout: float = 30.0) -> None:
    """Until the JavaScript `expression` is truthy in `page` (TimeoutError after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while not await page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression!r} still false after {timeout}s")
        await asyncio.sleep(0.05)
