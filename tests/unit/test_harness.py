"""The integration harness's own helpers: a poll that gives up at the first error that
is only "not yet" would make tests flaky or, worse, pass on an early exception path."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.conftest import eventually


def _ready_on_third_call(error: type[Exception]) -> Any:
    calls = {"n": 0}

    def check() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise error("not yet")
        return "done"

    return check, calls


@pytest.mark.parametrize("error", [AssertionError, KeyError, TypeError])
def test_eventually_retries_until_the_check_passes(error: type[Exception]) -> None:
    check, calls = _ready_on_third_call(error)
    assert eventually(check, timeout=5, interval=0.01) == "done"
    assert calls["n"] == 3


@pytest.mark.parametrize("error", [AssertionError, KeyError, TypeError])
def test_eventually_raises_the_last_error_at_the_deadline(error: type[Exception]) -> None:
    def check() -> None:
        raise error("never")

    started = time.monotonic()
    with pytest.raises(error):
        eventually(check, timeout=0.3, interval=0.01)
    assert time.monotonic() - started >= 0.3


def test_eventually_does_not_hide_other_errors() -> None:
    calls = {"n": 0}

    def check() -> None:
        calls["n"] += 1
        raise ValueError("a bug, not a wait")

    with pytest.raises(ValueError):
        eventually(check, timeout=5, interval=0.01)
    assert calls["n"] == 1


def test_eventually_times_out_on_a_falsy_value() -> None:
    with pytest.raises(AssertionError, match="timed out"):
        eventually(lambda: None, timeout=0.2, interval=0.01, what="nothing")
