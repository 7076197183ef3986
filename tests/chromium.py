"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol on a pipe.

With ``--remote-debugging-pipe`` the browser reads commands on its fd 3 and writes replies
and events on its fd 4, each one JSON text ended by a NUL byte. So no debugging port is
opened, and nothing but the standard library drives it: no driver package, no Node.js.

The browser may reach loopback only. The flags switch off every background service that
calls out (component updates, sync, field trials, safe browsing...), and
``--host-resolver-rules`` makes every host name but ``localhost`` unresolvable, so a
request to the outside fails inside the browser instead of leaving the machine; the pages
under test use ``127.0.0.1`` literals.

Waiting is on conditions, never on time: ``Page.wait_for`` runs a predicate in the page
after every change of the DOM (a ``MutationObserver``) until it holds.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium")

FLAGS = [
    "--headless",
    "--no-sandbox",  # tests run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--remote-debugging-pipe",
]


def query(selector: str) -> str:
    """The JS expression for the first element ``selector`` matches."""
    return f"document.querySelector({json.dumps(selector)})"


class BrowserError(AssertionError):
    """The browser said no, or did not answer in time; the message says what it was doing."""


class Chromium:
    """One browser process with a fresh profile; ``close()`` ends it."""

    def __init__(self, profile: Path, log: Path) -> None:
        assert CHROMIUM is not None, "no chromium on PATH"
        commands_r, self._commands = os.pipe()
        self._replies, replies_w = os.pipe()
        # The child gets the two pipe ends as its fds 3 and 4, which the protocol needs
        # (bash, not sh: dash's redirections take single-digit fds only).
        shell = f'exec "$0" "$@" 3<&{commands_r} 4>&{replies_w}'
        with open(log, "wb") as stderr:
            self.proc = subprocess.Popen(
                ["bash", "-c", shell, CHROMIUM, *FLAGS, f"--user-data-dir={profile}"],
                pass_fds=(commands_r, replies_w), stdin=subprocess.DEVNULL,
                stdout=stderr, stderr=stderr,
            )  # fmt: skip
        os.close(commands_r)
        os.close(replies_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def command(
        self, method: str, params: dict[str, Any] | None = None, *,
        session: str | None = None, timeout: float = 30,
    ) -> dict[str, Any]:  # fmt: skip
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        wanted = self._next_id
        reply = self._read_until(lambda m: m.get("id") == wanted, timeout, method)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    def wait_event(
        self, method: str, session: str, timeout: float = 30, **params: Any
    ) -> dict[str, Any]:
        """The first event ``method`` of ``session`` with these ``params`` (kept or next)."""

        def wanted(m: dict[str, Any]) -> bool:
            got = m.get("params", {})
            return (m.get("method"), m.get("sessionId")) == (method, session) and all(
                got.get(k) == v for k, v in params.items()
            )

        for i, event in enumerate(self.events):
            if wanted(event):
                return self.events.pop(i)
        return self._read_until(wanted, timeout, method)

    def _read_until(self, wanted: Any, timeout: float, doing: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                ready, _, _ = select.select([self._replies], [], [], max(left, 0))
                if not ready:
                    raise BrowserError(f"{doing}: no answer from chromium in {timeout} s")
                chunk = os.read(self._replies, 1 << 16)
                if not chunk:
                    raise BrowserError(f"{doing}: chromium exited ({self.proc.poll()})")
                self._buffer += chunk
            text, self._buffer = self._buffer.split(b"\0", 1)
            message: dict[str, Any] = json.loads(text)
            if wanted(message):
                return message
            if "method" in message:
                self.events.append(message)

    def new_page(self, width: int = 1024, height: int = 860) -> Page:
        """A tab in a browser context of its own (nothing shared with other pages: no
        cookies, storage or cache); ``Page.close`` disposes of it."""
        context = self.command("Target.createBrowserContext")["browserContextId"]
        target = self.command(
            "Target.createTarget", {"url": "about:blank", "browserContextId": context}
        )["targetId"]
        session = self.command("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, session["sessionId"], context)
        for method in ("Page.enable", "Runtime.enable"):
            page.command(method)
        page.command("Page.setLifecycleEventsEnabled", {"enabled": True})
        page.command(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return page

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.command("Browser.close", timeout=10)
            self.proc.wait(10)
        except (BrowserError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._commands)
            os.close(self._replies)


class Page:
    """A tab, attached in flat mode: its commands carry its session id."""

    def __init__(self, browser: Chromium, session: str, context: str) -> None:
        self.browser = browser
        self.session = session
        self.context = context

    def close(self) -> None:
        self.browser.command("Target.disposeBrowserContext", {"browserContextId": self.context})

    def command(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.browser.command(method, params, session=self.session, **kw)

    def navigate(self, url: str) -> None:
        """Until ``url`` has loaded: the load of this navigation's own document."""
        result = self.command("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"navigate {url}: {result['errorText']}")
        loader = result["loaderId"]
        self.browser.wait_event("Page.lifecycleEvent", self.session, name="load", loaderId=loader)

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        result = self.command(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout=timeout + 5,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{text}\n(page console: {self.console()})")
        return result["result"].get("value")

    def wait_for(self, predicate: str, timeout: float = 20) -> Any:
        """Until the JS expression ``predicate`` is truthy; its value. Checked now and after
        every change of the DOM."""
        return self.evaluate(
            f"""new Promise((resolve, reject) => {{
              const check = () => {{
                const value = ({predicate});
                if (value) {{ observer.disconnect(); clearTimeout(timer); resolve(value); }}
              }};
              const observer = new MutationObserver(check);
              observer.observe(document, {{subtree: true, childList: true, attributes: true,
                                           characterData: true}});
              const timer = setTimeout(() => {{
                observer.disconnect();
                reject(new Error("not within {timeout} s: " + {json.dumps(predicate)}));
              }}, {timeout * 1000});
              check();
            }})""",
            timeout=timeout,
        )

    def click(self, selector: str) -> None:
        """A real left click (mouse events) in the middle of the element."""
        x, y = self.evaluate(
            f"""(() => {{
              const el = document.querySelector({json.dumps(selector)});
              if (!el) throw new Error("no element " + {json.dumps(selector)});
              if (el.disabled) throw new Error({json.dumps(selector)} + " is disabled");
              el.scrollIntoView({{block: "center"}});
              const r = el.getBoundingClientRect();
              return [r.x + r.width / 2, r.y + r.height / 2];
            }})()"""
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            event = {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}
            self.command("Input.dispatchMouseEvent", event)

    def fill(self, selector: str, text: str) -> None:
        """Replaces the field's text as typing would (focus, select all, insert)."""
        self.evaluate(f"(el => {{ el.focus(); el.select(); }})({query(selector)})")
        self.command("Input.insertText", {"text": text})

    def text(self, selector: str) -> str:
        return str(self.evaluate(f"{query(selector)}.textContent"))

    def screenshot(self, path: Path) -> Path:
        shot = self.command("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def console(self) -> list[str]:
        """What the page logged or threw so far (for failure messages)."""
        lines = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            params = event.get("params", {})
            if event["method"] == "Runtime.consoleAPICalled":
                args = params["args"]
                lines.append(" ".join(str(a.get("value", a.get("description"))) for a in args))
            elif event["method"] == "Runtime.exceptionThrown":
                thrown = params["exceptionDetails"].get("exception", {})
                lines.append(str(thrown.get("description")))
        return lines
