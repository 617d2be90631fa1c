"""The parallel listing's coordinator, driven by hypothesis through every order of requests, answers and changes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.id_ranges import IdRanges, Job, Unordered, check_order

PER_PAGE = 10


class Server:
    """A group's ids as GitLab answers them: the first page after/before a cursor, ascending, or the newest page."""

    def __init__(self, ids: list[int]):
        self.ids = set(ids)
        self.requests = 0

    def answer(self, job: Job) -> tuple[list[dict], bool]:
        self.requests += 1
        if job.top:
            chosen = sorted(self.ids, reverse=True)
        else:
            chosen = sorted(i for i in self.ids if (job.after is None or i > job.after) and (job.before is None or i < job.before))
        return [{"id": i} for i in chosen[:PER_PAGE]], len(chosen) <= PER_PAGE


def total(server: Server) -> int:
    """GitLab's X-Total: the projects the group holds when the first page is read."""
    return len(server.ids)


def first_page(server: Server) -> tuple[list[dict], bool]:
    return server.answer(Job(top=False, after=None, before=None))


def run(ids: list[int], readers: int, seed: int, changes: int = 0, parallel: bool = True, counted: bool = True) -> tuple[list[int], set[int], Server]:
    """Run a listing with `readers` requests under way at most, answers and commits in a random order, and `changes`
    deletions/creations/transfers in between. Returns (ids listed, ids that lived throughout, server)."""
    rng = random.Random(seed)
    server = Server(ids)
    throughout = set(ids)
    first, last = first_page(server)
    if not first or (last and len(first) < PER_PAGE):
        return [p["id"] for p in first], throughout, server
    ranges = IdRanges(first, per_page=PER_PAGE, readers=readers if parallel else 1, total=total(server) if counted else None)
    under_way: list[tuple[Job, list[dict], bool]] = []
    left = changes
    for _ in range(100_000):
        if left and rng.random() < 0.2:
            left -= 1
            what = rng.choice(["delete", "create", "transfer-in"])
            if what == "delete" and server.ids:
                gone = rng.choice(sorted(server.ids))
                server.ids.discard(gone)
                throughout.discard(gone)
            elif what == "create":
                server.ids.add(max(server.ids | {0}) + rng.randint(1, 50))
            else:  # a project with an old id moves into the group (it did not live here throughout)
                server.ids.add(rng.randint(1, max(server.ids | {1})))
            continue
        if len(under_way) < readers and (not under_way or rng.random() < 0.5):
            job = ranges.take()
            if job is None:
                break
            if job != "wait":
                under_way.append((job, *server.answer(job)))  # GitLab reads its data when the request arrives
                continue
        assert under_way, "the coordinator waits with nothing under way"
        done = under_way.pop(rng.randrange(len(under_way)))
        check_order(done[1], done[0])
        ranges.commit(*done)
    else:
        pytest.fail("the listing did not end")
    found = ranges.projects()
    for done in under_way:  # requests for ranges the newest page closed meanwhile: their answers change nothing
        ranges.commit(*done)
    assert ranges.projects() == found
    return [p["id"] for p in ranges.projects()], throughout, server


def scattered(n: int, seed: int) -> list[int]:
    """n ids as a group's are: bursts of neighbours, and long gaps (the instance's other projects)."""
    rng = random.Random(seed)
    ids, current = [], rng.randint(1, 1000)
    while len(ids) < n:
        current += rng.choice([1, 1, 1, 2, 3, rng.randint(10, 5000)])
        ids.append(current)
    return ids


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 400), readers=st.integers(1, 8), seed=st.integers(0, 10**6), changes=st.integers(0, 30),
       parallel=st.booleans(), counted=st.booleans())
def test_every_project_that_lived_throughout_is_listed_once(n, readers, seed, changes, parallel, counted):
    listed, throughout, _ = run(scattered(n, seed), readers, seed, changes, parallel, counted)
    assert len(listed) == len(set(listed)) and listed == sorted(listed)
    assert throughout <= set(listed), sorted(throughout - set(listed))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(200, 2000), seed=st.integers(0, 10**6), counted=st.booleans())
def test_without_changes_the_listing_is_exact_and_wastes_few_requests(n, seed, counted):
    ids = scattered(n, seed)
    listed, _, server = run(ids, 8, seed, counted=counted)
    assert listed == ids
    pages = -(-n // PER_PAGE)
    # Each range ends on a part-filled page, and a split drops what the reader's request under way read beyond it:
    # a few requests per reader, whatever the group's size and the order of the answers.
    assert server.requests <= pages + 3 * 8, (server.requests, pages)


def test_one_reader_reads_one_cursor_and_never_the_newest_page():
    listed, _, server = run(list(range(1, 96)), 1, 0, parallel=False)
    assert listed == list(range(1, 96)) and server.requests == 10  # 9 full pages and the last, no newest page


@pytest.mark.parametrize(("job", "ids"), [
    (Job(top=False, after=10, before=None), [11, 10]),  # not ascending
    (Job(top=False, after=10, before=None), [5]),  # at or below the cursor: id_after ignored
    (Job(top=False, after=10, before=20), [11, 20]),  # at or above the end: id_before ignored
    (Job(top=True, after=None, before=None), [5, 6]),  # the newest page not descending: sort ignored
])
def test_answers_outside_what_was_asked_are_refused(job, ids):
    with pytest.raises(Unordered):
        check_order([{"id": i} for i in ids], job)


def test_a_failure_ends_every_readers_work():
    ranges = IdRanges([{"id": i} for i in range(1, 11)], per_page=10, readers=8)
    assert isinstance(ranges.take(), Job)
    ranges.fail(RuntimeError("503"))
    assert ranges.take() is None and ranges.next_job() is None and str(ranges.failure) == "503"


def test_a_request_given_up_because_another_failed_never_hides_the_cause():
    ranges = IdRanges([{"id": i} for i in range(1, 11)], per_page=10, readers=8)
    ranges.fail(RuntimeError("given up"), secondary=True)  # a reader saw the cancel before the failing one reported
    ranges.fail(RuntimeError("403 Forbidden"))
    ranges.fail(RuntimeError("503 later"))
    assert str(ranges.failure) == "403 Forbidden"
