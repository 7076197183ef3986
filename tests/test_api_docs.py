"""docs/api.md and the implementation list the same methods and error reasons."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from ecrd import errors
from ecrd.api.methods import METHODS
from ecrd.events import EventBus

DOC = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()


def test_every_documented_method_exists_and_every_method_is_documented() -> None:
    documented = set(re.findall(r"^### `([a-z.]+)`$", DOC, flags=re.MULTILINE))
    assert documented == set(METHODS)


def test_every_error_reason_is_in_the_error_table() -> None:
    table = DOC.split("## Errors", 1)[1].split("## The transaction record", 1)[0]
    for cls in errors.ApiError.__subclasses__():
        assert f"`{cls.reason}`" in table, f"{cls.__name__}.reason is not documented"
        assert f"| {cls.code} |" in table, f"{cls.__name__}.code is not documented"


def test_every_documented_method_has_an_example_request_and_reply() -> None:
    for name in METHODS:
        section = DOC.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
        assert f'"method":"{name}"' in section, f"{name} has no example request"
        assert '"result"' in section, f"{name} has no example reply"


def test_the_event_queue_documented_is_the_one_a_connection_gets() -> None:
    # The server subscribes a connection with the bus's default size.
    size = inspect.signature(EventBus.subscribe).parameters["size"].default
    section = DOC.split("\n## Events\n", 1)[1]
    assert re.findall(r"its queue \((\d+) messages\)", section) == [str(size)]
