"""Progress of the photo steps: lines with estimates, a bar on a terminal, silence with -q."""
from __future__ import annotations

import doctest
import io

import pytest

from stimgen.backends import showing_progress
from stimgen.backends.emostyle import steps
from stimgen.backends.emostyle.steps import StepProgress, photo_step, say_reused


def clock(*ticks):
    times = iter(ticks)
    return lambda: next(times)


def test_lines_name_identity_and_step_and_estimate_the_time_left():
    stream = io.StringIO()
    step = StepProgress("id03", "inversion", 100, stream=stream, rates={},
                        clock=clock(0.0, 1.0, 5.0, 12.0, 30.0, 100.0))
    step.update(1, 100, {"total": 0.9})      # first step: always an estimate
    step.update(5, 100, {"total": 0.8})      # before a tenth: no line
    step.update(10, 100, {"total": 0.7})     # a tenth, 12 s after the last line
    step.update(20, 100, {"total": 0.6})     # a tenth, 18 s later
    step.close()
    assert stream.getvalue().splitlines() == [
        "id03 · inversion: 100 steps",
        "id03 · inversion: 1/100 steps, 1.0 s elapsed, about 1 min 39 s left (loss 0.900)",
        "id03 · inversion: 10/100 steps, 12.0 s elapsed, about 1 min 48 s left (loss 0.700)",
        "id03 · inversion: 20/100 steps, 30.0 s elapsed, about 2 min 00 s left (loss 0.600)",
        "id03 · inversion: done, 100 steps in 1 min 40 s",
    ]


def test_lines_are_spaced_in_time_and_the_next_identity_starts_with_an_estimate():
    rates, stream = {}, io.StringIO()
    step = StepProgress("id01", "personalisation", 10, stream=stream, rates=rates,
                        clock=clock(0.0, 1.0, 2.0, 3.0, 20.0))
    step.update(1, 10)
    step.update(2, 10)                       # a tenth further, but 1 s after the last line
    step.update(3, 10)
    step.update(10, 10)
    step.close()
    assert len(stream.getvalue().splitlines()) == 3
    assert rates == {"personalisation": 2.0}
    following = io.StringIO()
    StepProgress("id02", "personalisation", 50, stream=following, rates=rates, clock=clock(0.0))
    assert following.getvalue() == ("id02 · personalisation: 50 steps, about 1 min 40 s as for "
                                     "the last identity\n")


def test_a_single_unit_step_says_when_it_starts_and_how_long_it_took():
    stream = io.StringIO()
    step = StepProgress("id03", "alignment", 1, stream=stream, rates={}, clock=clock(0.0, 0.4))
    step.close()
    assert stream.getvalue().splitlines() == ["id03 · alignment ...",
                                              "id03 · alignment: done, 0.4 s"]


def test_photo_step_is_silent_without_progress(capsys):
    with showing_progress(False), photo_step("id03", "inversion", 3) as progress:
        progress(1, 3, {"total": 1.0})
    assert capsys.readouterr().err == ""
    with photo_step("id03", "inversion", 3) as progress:     # on again outside the block
        progress(1, 3, {"total": 1.0})
    assert "id03 · inversion: 1/3 steps" in capsys.readouterr().err


def test_a_cached_identity_says_so_once_unless_quiet(capsys):
    say_reused("id03")
    assert capsys.readouterr().err == ("id03 · alignment, inversion, personalisation: reused "
                                       "from the identity cache\n")
    with showing_progress(False):
        say_reused("id03")
    assert capsys.readouterr().err == ""


def test_on_a_terminal_the_step_is_a_bar_with_an_eta(capsys, monkeypatch):
    monkeypatch.setattr(steps, "_on_terminal", lambda: True)
    with photo_step("id03", "inversion", 4) as progress:
        for done in range(1, 5):
            progress(done, 4, {"total": 0.5})
    err = capsys.readouterr().err
    assert "id03 · inversion:" in err and "4/4" in err and "<" in err     # [elapsed<eta]
    assert "loss=0.500" in err and "id03 · inversion: done, 4 steps in" in err


def test_a_failed_step_is_not_reported_done(capsys):
    with pytest.raises(RuntimeError):
        with photo_step("id03", "alignment"):
            raise RuntimeError("no face")
    assert capsys.readouterr().err == "id03 · alignment ...\n"


def test_unknown_step_names_are_a_bug():
    with pytest.raises(ValueError, match="alignment"):
        with photo_step("id03", "warping"):
            pass


def test_docstring_examples():
    assert doctest.testmod(steps).failed == 0
