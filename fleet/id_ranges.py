"""Reading a group's listing in parallel without losing a project: id ranges read by cursor, split while read.

Discovery reads `GET /groups/:id/projects` by cursor (`id_after`, ascending ids), which keeps a listing complete
while projects come and go (see fleet/discovery.py). One cursor is one request at a time; this module runs many.
The id space is cut into ranges, each read by its own cursor (`id_after` = the range's last id received,
`id_before` = its end): every range is complete by the cursor's argument, and the ranges never overlap, so their
union is the whole listing once, whatever changes meanwhile.

The ranges are not known in advance (a group's ids are scattered over the instance's). After the first page,
one reader continues from its last id, with no end, while another reads the newest page (`sort=desc`): that page
holds every id from its lowest up, which gives the open range its end. From then on an idle reader takes the
upper half of the range with the most work left (estimated from the ids read so far per id); the range's reader
keeps the lower half, and drops what its request under way returns beyond the new end (the taker reads it).
The coordinator below holds no I/O: readers ask it for a job, fetch, and hand the page back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal


class Unordered(Exception):
    """An answer outside what was asked, or out of order: a server that ignores id_after, id_before or sort."""

    def __init__(self, got: int, *, after: int | None, before: int | None, descending: bool):
        asked = [f"ids above {after}" if after is not None else "", f"below {before}" if before is not None else ""]
        words = " and ".join(a for a in asked if a) or "its newest projects"
        super().__init__(f"answered a request for projects with {words} ({'descending' if descending else 'ascending'}) "
                         f"with project {got}")
        self.got = got


@dataclass
class _Range:
    lo: int  # exclusive: every project of the range up to this id has been received
    hi: int | None  # exclusive end; None: open (the newest page has not closed it yet)
    start: int  # lo when the range was made (for its density)
    received: int = 0
    recent: float = 0.0  # projects per id in its last full page: where its reader is now
    owned: bool = False  # a reader has a request under way for it
    split_since_answer: bool = False  # its estimate is stale until its reader's next answer
    done: bool = False


@dataclass(frozen=True)
class Job:
    """One request: the newest page (`top`), or the next page of a range (ids above `after` and below `before`)."""

    top: bool
    after: int | None
    before: int | None
    range: _Range | None = None


def _id(item: Any) -> int:
    """A project's id as discovery already checked it is (an int)."""
    value = item["id"]
    assert isinstance(value, int)
    return value


def check_order(items: list[Any], job: Job) -> None:
    """Each id within what was asked and in the asked order; raises Unordered otherwise."""
    previous: int | None = None
    for item in items:
        got = _id(item)
        outside = (job.after is not None and got <= job.after) or (job.before is not None and got >= job.before)
        out_of_order = previous is not None and (got >= previous if job.top else got <= previous)
        if outside or out_of_order:
            raise Unordered(got, after=job.after, before=job.before, descending=job.top)
        previous = got


class IdRanges:
    """The shared state of one parallel listing: jobs for the readers, and the projects received (thread-safe)."""

    def __init__(self, first: list[Any], *, per_page: int, readers: int = 1, total: int | None = None,
                 newest_under_way: bool = False, requests_are_free: bool = True):
        """`first`: the first page (ascending, from no cursor), full and not the last. One reader reads the rest by
        one cursor (no newest page, no splits). With more, and GitLab's count of the projects (`total`, X-Total),
        the ids ahead are cut at once into a range per reader but one (who reads the newest page), spaced as the
        first page's ids are; the last range stays open. `newest_under_way`: the newest page is read by the caller
        (who commits it with a top Job), not asked of the readers. `requests_are_free`: no request rate limit, so an idle
        reader may split a range with little more than a page left (a round sooner, for a part-filled page more);
        under a rate limit every request costs its turn, and only ranges with three pages left are split."""
        self.per_page = per_page
        self._worth = 1.2 if requests_are_free else 3.0  # pages left after the reader's request under way
        self._cond = threading.Condition()
        self._items: dict[int, Any] = {_id(i): i for i in first}
        low, high = _id(first[0]), _id(first[-1])
        self._span = high - low + 1  # ids covered by what was received, for the density
        cuts = [high]
        if readers > 2 and total is not None and total > len(first) + per_page:
            ahead = (total - len(first)) * self._span / len(first)  # ids the rest likely spans
            cuts += sorted({high + int(ahead * n / (readers - 1)) for n in range(1, readers - 1)} - {high})
        self._ranges = [_Range(lo=lo, hi=hi, start=lo) for lo, hi in zip(cuts, [*cuts[1:], None], strict=True)]
        for r in self._ranges[1:]:
            r.lo = r.start = r.lo - 1  # a range holds the ids above lo: each cut id belongs to the range it starts
        self._top = "under-way" if newest_under_way else "wanted" if readers > 1 else "not-needed"
        self._failure: BaseException | None = None
        self._secondary = False

    # --- for the readers -------------------------------------------------------------------
    def next_job(self) -> Job | None:
        """The next request to make; blocks while others' answers may create work; None when the listing is done."""
        with self._cond:
            while (job := self._take()) == "wait":
                self._cond.wait()
            return job

    def take(self) -> Job | Literal["wait"] | None:
        """next_job without blocking: "wait" while only answers under way can make more work."""
        with self._cond:
            return self._take()

    def commit(self, job: Job, items: list[Any], last: bool) -> None:
        """Take the answer to `job` (checked with check_order first): `last` as GitLab says (X-Next-Page empty)."""
        with self._cond:
            if job.top:
                self._commit_top(items, last)
            else:
                assert job.range is not None
                self._commit_range(job.range, items, last)
            self._cond.notify_all()

    def fail(self, err: BaseException, *, secondary: bool = False) -> None:
        """A request failed: the listing stops; the first failure is the one to report. `secondary`: a request given
        up because another failed; reported only if no other failure ever is (it never hides the cause)."""
        with self._cond:
            if self._failure is None or (self._secondary and not secondary):
                self._failure, self._secondary = err, secondary
            self._cond.notify_all()

    # --- results -----------------------------------------------------------------------------
    @property
    def failure(self) -> BaseException | None:
        return self._failure

    @property
    def found(self) -> int:
        return len(self._items)

    def projects(self) -> list[Any]:
        """Every project received, ascending ids."""
        with self._cond:
            return [self._items[k] for k in sorted(self._items)]

    # --- inside the lock ---------------------------------------------------------------------
    def _take(self) -> Job | Literal["wait"] | None:
        if self._failure is not None:
            return None
        if self._top == "wanted":
            self._top = "under-way"
            return Job(top=True, after=None, before=None)
        idle = next((r for r in self._ranges if not r.owned and not r.done), None)
        if idle is None:
            idle = self._split()
        if idle is not None:
            idle.owned = True
            return Job(top=False, after=idle.lo, before=idle.hi, range=idle)
        if self._top != "under-way" and all(r.done for r in self._ranges):
            return None
        return "wait"

    def _add(self, items: list[Any]) -> None:
        for item in items:
            key = _id(item)
            assert key not in self._items, f"project {key} received twice"  # the ranges never overlap
            self._items[key] = item

    def _commit_range(self, r: _Range, items: list[Any], last: bool) -> None:
        r.owned = False
        r.split_since_answer = False
        if r.done:  # closed meanwhile by the newest page, which holds all of it
            return
        keep = [i for i in items if r.hi is None or _id(i) < r.hi]
        self._add(keep)
        r.received += len(keep)
        if keep:
            self._span += _id(keep[-1]) - r.lo
            if len(keep) == self.per_page:
                r.recent = len(keep) / (_id(keep[-1]) - r.lo)
            r.lo = _id(keep[-1])
        # Done: the answer passed the range's end (the rest is another range's), or GitLab had nothing more.
        if len(keep) < len(items) or not items or (last and len(items) < self.per_page) or (r.hi is not None and r.lo >= r.hi - 1):
            r.done = True

    def _commit_top(self, items: list[Any], last: bool) -> None:
        """The newest page (descending ids) holds every project from its lowest id up: no range needs to read there."""
        self._top = "done"
        whole = not items or (last and len(items) < self.per_page)  # every project of the group, as it was then
        lowest = _id(items[-1]) if items else 0
        for r in self._ranges:
            end = lowest if r.hi is None else min(r.hi, lowest)
            if whole or r.lo >= end - 1:
                r.done = True
            else:
                r.hi = end
        # What a range has received from up there already is kept (one copy of each project).
        self._add([i for i in reversed(items) if _id(i) not in self._items])

    def _density(self, r: _Range) -> float:
        """Projects per id ahead of the range's reader: as in its last full page (a group's ids come in bursts),
        else as in the listing so far."""
        return r.recent or self._overall()

    def _overall(self) -> float:
        return len(self._items) / max(self._span, 1)

    def _split(self) -> _Range | None:
        """The upper half of the range with the most work left, as a new range; None when nothing is worth it."""
        best: tuple[float, _Range, int] | None = None
        for r in self._ranges:
            if r.done or r.hi is None:
                continue
            density = self._density(r)
            if r.split_since_answer:  # a burst it was reading may have ended: split again only if the listing's
                density = min(density, self._overall())  # average says so too (else empty halves one after another)
            # Its reader's request under way will take about a page: split what is left after it.
            ahead = r.lo + (int(self.per_page / density) if r.owned and density > 0 else 0)
            left = (r.hi - 1 - ahead) * density
            if left >= self._worth * self.per_page and (best is None or left > best[0]):
                best = (left, r, ahead)
        if best is None:
            return None
        _, r, ahead = best
        middle = ahead + (r.hi - ahead) // 2  # type: ignore[operator]  # r.hi is set: checked above
        if not r.lo + 1 < middle < r.hi:  # type: ignore[operator]
            return None
        taken = _Range(lo=middle - 1, hi=r.hi, start=middle - 1)
        r.hi = middle
        r.split_since_answer = True
        self._ranges.append(taken)
        return taken
