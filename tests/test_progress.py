"""Progress: a bar only on a person's terminal, plain lines at most every few seconds elsewhere."""

from __future__ import annotations

import io

from fleet.progress import Lines, Silent, meter, on_terminal


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_come_at_most_every_interval_and_say_how_far():
    now = [0.0]
    logged: list[str] = []
    lines = Lines(logged.append, "listing acme", "projects", 10_000, interval=5, clock=lambda: now[0])
    for done, at in ((100, 1.0), (900, 4.9), (2_000, 5.0), (2_100, 6.0), (7_300, 10.2)):
        now[0] = at
        lines.update(done, f"{done // 100} requests")
    assert logged == ["listing acme: 2,000 of 10,000 projects, 20 requests, 5 s",
                      "listing acme: 7,300 of 10,000 projects, 73 requests, 10 s"]


def test_without_a_total_the_lines_count_alone():
    now = [0.0]
    logged: list[str] = []
    lines = Lines(logged.append, "listing acme", "projects", None, interval=1, clock=lambda: now[0])
    now[0] = 2
    lines.update(12_345)
    assert logged == ["listing acme: 12,345 projects, 2 s"]


def test_a_bar_only_on_a_terminal_outside_ci():
    assert on_terminal(Tty(), {"TERM": "xterm-256color"})
    assert not on_terminal(Tty(), {"TERM": "xterm", "CI": "true"})  # GitLab CI sets CI
    assert not on_terminal(Tty(), {"TERM": "dumb"})
    assert not on_terminal(io.StringIO(), {"TERM": "xterm"})  # a pipe or a file


def test_no_log_no_output():
    assert isinstance(meter(None, "x", "projects", 3, bar=False), Silent)
    assert isinstance(meter(print, "x", "projects", 3, bar=False), Lines)


def test_on_a_terminal_the_bar_shows_how_far_and_is_gone_at_the_end():
    from fleet.progress import Bar
    screen = Tty()
    bar = Bar("listing big", "projects", 1_000, stream=screen)
    bar.update(500, "5 requests")
    bar.close()
    drawn = screen.getvalue()
    assert "listing big" in drawn and "500/1000" in drawn and "5 requests" in drawn
    assert drawn.endswith("\x1b[2K")  # the last line is erased: the summary line that follows stands alone
