"""The package logger's capture for tests (catch_logging) and the verbose convention."""

import logging

import pytest

from neurofuse._logging import catch_logging, logger, use_log_level, verbose


@verbose
def _talk(*, verbose=None):
    logger.debug("debug line %d", 1)
    logger.info("info line")
    logger.warning("warning about %s", "x")


def test_catch_logging_ignores_propagate_and_restores_the_logger():
    assert logger.propagate is False  # the reason for catch_logging: caplog listens on root
    n_handlers, level = len(logger.handlers), logger.level
    with catch_logging() as log:
        _talk()
    assert log.messages == ["warning about x"]  # package level WARNING by default
    assert log.text == "WARNING: warning about x\n" == log.getvalue()
    assert log.records[0].levelno == logging.WARNING
    assert len(logger.handlers) == n_handlers and logger.level == level
    _talk()  # after the block nothing more is captured
    assert len(log.records) == 1


@pytest.mark.parametrize(("level", "expected"), [
    ("debug", ["debug line 1", "info line", "warning about x"]),
    (True, ["info line", "warning about x"]),
    ("error", []),
])
def test_catch_logging_level(level, expected):
    with catch_logging(level) as log:
        _talk()
    assert log.messages == expected
    # a call's own verbose wins over the block's level, as everywhere in the package
    with catch_logging("error") as log:
        _talk(verbose="info")
    assert log.messages == ["info line", "warning about x"]


def test_catch_logging_removes_its_handler_on_error():
    n_handlers = len(logger.handlers)
    with pytest.raises(RuntimeError), use_log_level("warning"), catch_logging() as log:
        logger.warning("before")
        raise RuntimeError
    assert log.messages == ["before"] and len(logger.handlers) == n_handlers


def test_catch_logs_fixture(catch_logs):
    with catch_logs("info") as log:
        logger.info("from %s", "the fixture")
    assert "INFO: from the fixture" in log.text
