"""service/logging.py: one JSON object per line with the job id and attempt when known."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from service.logging import bind, configure_logging, log_context
from service.settings import Settings


@pytest.fixture
def capture() -> Iterator[io.StringIO]:
    """Our root handler on a buffer; removed afterwards so other tests see the usual root."""
    buffer = io.StringIO()
    root = logging.getLogger()
    level = root.level
    yield buffer
    for handler in [h for h in root.handlers if getattr(h, "stream", None) is buffer]:
        root.removeHandler(handler)
    root.setLevel(level)


def use(buffer: io.StringIO, log_format: str) -> None:
    configure_logging(Settings(_env_file=None, log_format=log_format), stream=buffer)


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_line_has_the_documented_fields(capture: io.StringIO) -> None:
    buffer = capture
    use(buffer, "json")
    log = logging.getLogger("regimen.test")
    log.info("plain %s", "message")
    with log_context(job_id="0b6c", attempt=2):
        log.warning("inside %d", 7)
    log.info("after")

    plain, inside, after = lines(buffer)
    assert set(plain) == {"time", "level", "logger", "message"}
    assert plain["logger"] == "regimen.test"
    assert plain["message"] == "plain message"
    assert plain["level"] == "INFO"
    parsed = datetime.fromisoformat(str(plain["time"]))
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0
    assert (inside["level"], inside["message"]) == ("WARNING", "inside 7")
    assert (inside["job_id"], inside["attempt"]) == ("0b6c", 2)
    assert "job_id" not in after and "attempt" not in after


def test_bind_adds_fields_until_the_enclosing_block_ends(
    capture: io.StringIO,
) -> None:
    buffer = capture
    use(buffer, "json")
    log = logging.getLogger("regimen.test")
    with log_context(job_id="j1"):
        log.info("claimed")
        bind(attempt=3)  # the supervisor learns the attempt only after claiming
        log.info("running")
    log.info("done")
    claimed, running, done = lines(buffer)
    assert claimed["job_id"] == "j1" and "attempt" not in claimed
    assert (running["job_id"], running["attempt"]) == ("j1", 3)
    assert "job_id" not in done and "attempt" not in done


def test_exception_stays_on_one_line(capture: io.StringIO) -> None:
    buffer = capture
    use(buffer, "json")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logging.getLogger("regimen.test").exception("failed")
    (entry,) = lines(buffer)  # json.loads on each line: a traceback did not split the line
    assert entry["message"] == "failed"
    assert "ValueError: boom" in str(entry["exception"])


def test_uvicorn_lines_go_through_the_same_handler(capture: io.StringIO) -> None:
    buffer = capture
    use(buffer, "json")
    logging.getLogger("uvicorn.error").info("Started server process")
    (entry,) = lines(buffer)
    assert entry["logger"] == "uvicorn.error"


def test_text_format_for_humans(capture: io.StringIO) -> None:
    buffer = capture
    earlier = io.StringIO()
    use(earlier, "json")
    use(buffer, "text")  # replaces the JSON handler: configuring twice never doubles lines
    log = logging.getLogger("regimen.test")
    with log_context(job_id="j9", attempt=1):
        log.info("hello")
    log.info("bye")
    assert earlier.getvalue() == ""
    hello, bye = buffer.getvalue().splitlines()
    assert hello.endswith(" INFO regimen.test [job_id=j9 attempt=1] hello")
    assert bye.endswith(" INFO regimen.test bye")
    with pytest.raises(json.JSONDecodeError):
        json.loads(hello)
