"""Discovery: list a GitLab group's projects completely, or not at all.

A project missing from the listing means its role and variables are deleted, so the listing is
complete by construction rather than checked afterwards. `GET /groups/:id/projects` offers only
offset pagination, and offsets shift when a project is deleted while the pages are read (the
next page then starts one project late and a live project is never seen); GitLab also omits the
totals that could reveal it beyond 10,000 records. So every request asks for the first page of
the projects whose id is above the last id received (`id_after`, ascending ids): each answer
starts exactly where the previous one ended, whatever is deleted or created meanwhile, with or
without totals. A project that exists for the whole listing is therefore always in it. Large groups are read by
up to fleet:gitlab.concurrency such cursors at once, over disjoint ranges of ids (fleet/id_ranges.py).

Refused, with "run again" or a reason: an answer that breaks the ascending order after the cursor
(a server that ignores `id_after`), and two ids with one path (renames while the listing was read:
both roles would trust the same `sub`). No request is made without a token: an anonymous listing
answers with the public projects only.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .config import GitLabConfig, is_numeric_id
from .errors import DiscoveryError
from .gitlab_api import Cancelled, GitLabAPI, GitLabError, RetryPolicy
from .id_ranges import IdRanges, Job, Unordered, check_order
from .inventory import Inventory, PathClash, Project, parse_inventory, parse_project
from .progress import meter, stderr_is_terminal
from .spelling import spell

PER_PAGE = 100

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_token(env_token: str | None, secret: str | None = None, *, secret_offered: bool = False) -> str:
    """The one GitLab token for listing and for writing variables: GITLAB_TOKEN or the `gitlab:token` secret.

    Both set and different is refused (listing and writing would act as different users), and so is
    none: GitLab answers an anonymous listing with the public projects only, a silently shrunken fleet.
    """
    where = "GITLAB_TOKEN or the stack secret gitlab:token" if secret_offered else "GITLAB_TOKEN"
    if env_token and secret and env_token != secret:
        raise DiscoveryError("GITLAB_TOKEN and the stack secret gitlab:token are both set and differ: unset one, "
                             "so that listing projects and writing their variables use the same token.")
    token = env_token or secret
    if not token:
        raise DiscoveryError(f"no GitLab token: set {where} to a token with the read_api scope (api to write "
                             "variables). Without one GitLab lists only public projects, and the roles of all others "
                             "would be deleted.")
    if not token.isascii() or not token.isprintable() or token != token.strip() or " " in token:
        raise DiscoveryError(f"the GitLab token in {where} contains spaces, line breaks or non-ASCII characters; "
                             "set it to the token alone.")
    return token


def _serves_api(api: GitLabAPI) -> bool | None:
    """Whether <api_url>/api/v4 is GitLab's API, asked of GET /version: None when the answer cannot tell."""
    try:
        data, _ = api.get("/version")
    except GitLabError as err:
        return False if err.kind in ("not-found", "bad-response") else None
    return isinstance(data, dict) and "version" in data


def _not_found(err: GitLabError, config: GitLabConfig, api: GitLabAPI) -> str:
    """A 404 for the group: a group GitLab does not show this token, or no GitLab API at that address."""
    api_url, group = config.api_url, config.group
    missing = (f"GitLab group '{group}' was not found at {api_url} (404): check fleet:gitlab.group (or --group); "
               "GitLab also answers 404 for a group the token's user cannot see (it needs Reporter access).")
    no_api = (f"{api_url}/api/v4 is not GitLab's API (404 for the group's projects and for GET /version): set "
              "fleet:gitlab.apiUrl (or --api-url) to the address GitLab is served at, without /api/v4 (e.g. "
              "https://host/gitlab when GitLab lives under /gitlab).")
    if "Group Not Found" in str(err):
        return missing
    serves = _serves_api(api)
    if serves is None:
        return f"{missing} Or: {no_api}"
    return missing if serves else no_api


def explain_failure(err: GitLabError, config: GitLabConfig, what: str, client: GitLabAPI) -> DiscoveryError:
    """One sentence for each way a request fails, naming what was being read and what to do."""
    api, group = config.api_url, config.group
    tries = f" after {err.retries} retries" if err.retries else ""
    if err.kind == "not-found":
        return DiscoveryError(_not_found(err, config, client))
    messages = {
        "unauthorized": f"GitLab at {api} rejected the token (401 Unauthorized): set GITLAB_TOKEN to a valid token "
                        "with the read_api scope.",
        "forbidden": f"The token may not list projects of GitLab group '{group}' (403 Forbidden): it needs the "
                     "read_api scope and at least Reporter access to the group.",
        "rate-limited": f"GitLab at {api} kept rate-limiting {what}{tries} ({err}); nothing was planned, try again later.",
        "server-error": f"GitLab at {api} failed while {what} ({f'HTTP {err.status}' if err.status else err}){tries}; "
                        "nothing was planned.",
        "http-error": f"GitLab at {api} refused {what} ({err}); nothing was planned.",
        "timeout": f"GitLab at {api} did not answer within {config.timeout:g} s while {what}{tries}; nothing was "
                   "planned. If the instance is slow, raise fleet:gitlab.timeout (or --timeout).",
        "unreachable": f"Could not reach GitLab at {api} while {what} ({err}); nothing was planned. Check "
                       "fleet:gitlab.apiUrl (or --api-url) and the network.",
        "tls": f"Could not make a TLS connection to GitLab at {api} while {what} ({err}); nothing was planned.",
        "bad-response": f"GitLab at {api} did not answer like the GitLab API while {what} ({err}); check "
                        "fleet:gitlab.apiUrl (or --api-url): it is the instance's base URL, without /api/v4.",
    }
    return DiscoveryError(messages[err.kind])


def open_api(config: GitLabConfig, token: str, progress: Progress | None) -> GitLabAPI:
    """The GitLab API as the stack's fleet:gitlab settings allow: timeout, retries, requests at once, request rate."""
    policy = RetryPolicy(timeout=config.timeout, max_retries=config.max_retries)
    return GitLabAPI(config.api_url, token, policy, log=progress, rate=config.rate_limit,
                     connections=config.concurrency)


def _group_object(api: GitLabAPI, config: GitLabConfig, progress: Progress | None) -> dict[str, Any]:
    """The group's id and canonical full path (GET /groups/:id), read after its projects were listed.

    Should that endpoint alone answer 404, a group configured by path is still known by that path.
    """
    try:
        attrs = api.group(config.group)
    except GitLabError as err:
        if err.kind != "not-found" or is_numeric_id(config.group):
            raise
        if progress:
            progress(f"GET /groups/{config.group} answered 404 although its projects were listed; "
                     f"identifying the group by its configured path '{config.group}'")
        return {"id": None, "full_path": config.group}
    return {k: attrs.get(k) for k in ("id", "full_path", "name", "web_url")}


def _checked(items: list[Any], job: Job, api: GitLabAPI) -> list[Any]:
    """A page's items, refused unless each has an integer id within what `job` asked, in the order it asked."""
    for item in items:
        project_id = item.get("id") if isinstance(item, dict) else None
        if isinstance(project_id, bool) or not isinstance(project_id, int):
            raise DiscoveryError(f"GitLab at {api.api_url} listed a project without an integer id ({spell(item)[:200]}); "
                                 "nothing was planned.")
    try:
        check_order(items, job)
    except Unordered as err:
        raise DiscoveryError(f"GitLab at {api.api_url} {err}: it ignores id_after, id_before or sort, so the listing "
                             "cannot be shown complete; nothing was planned.") from err
    return items


Parsed = dict[int, tuple[Any, Project]]  # see parse_inventory


def _read_page(api: GitLabAPI, config: GitLabConfig, job: Job, parsed: Parsed,
               cancel: threading.Event | None = None) -> tuple[list[Any], bool]:
    """The page `job` asks for, its ids checked to be what was asked, its projects parsed (while other requests wait
    for their answers)."""
    items, last = api.group_projects(config.group, after=job.after, before=job.before, descending=job.top,
                                     include_subgroups=config.include_subgroups, with_shared=config.include_shared,
                                     per_page=PER_PAGE, cancel=cancel)
    for item in _checked(items, job, api):
        parsed[id(item)] = (item, parse_project(item, 0))
    return items, last


def _reader(api: GitLabAPI, config: GitLabConfig, ranges: IdRanges, parsed: Parsed) -> None:
    """One of the listing's readers: jobs from `ranges` until none is left or a request fails."""
    while (job := ranges.next_job()) is not None:
        try:
            ranges.commit(job, *_read_page(api, config, job, parsed))
        except BaseException as err:  # handed to the listing's thread, which reports the first failure
            ranges.fail(err, secondary=isinstance(err, Cancelled))
            api.cancel.set()
            return


class _Newest(threading.Thread):
    """The group's newest page (ids descending), read alongside its first page: on a large group it ends the open
    range at once; on a group of one page it goes unused."""

    def __init__(self, api: GitLabAPI, config: GitLabConfig, parsed: Parsed):
        super().__init__(name="discovery-newest", daemon=True)
        self.api, self.config, self.parsed = api, config, parsed
        self.stop = threading.Event()  # not needed after all, or the listing failed: give up at the next wait
        self.job = Job(top=True, after=None, before=None)
        self.answer: tuple[list[Any], bool] | None = None
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self.answer = _read_page(self.api, self.config, self.job, self.parsed, self.stop)
        except BaseException as err:  # handed to the listing's thread
            self.failure = err


def list_projects(api: GitLabAPI, config: GitLabConfig, progress: Progress | None, *, bar: bool = False,
                  more_pages: Callable[[], None] = lambda: None, parsed: Parsed | None = None) -> list[dict[str, Any]]:
    """Every project GitLab lists for the group, in ascending id order (see the module docstring), read by up to
    fleet:gitlab.concurrency requests at once (see fleet/id_ranges.py). `more_pages` is called when the first page
    was not the last (other requests can start alongside)."""
    parsed = {} if parsed is None else parsed
    newest = _Newest(api, config, parsed) if config.concurrency > 1 else None
    if newest is not None:
        newest.start()
    try:
        first = api.projects_page(config.group, after=None, include_subgroups=config.include_subgroups,
                                  with_shared=config.include_shared, per_page=PER_PAGE)
        _checked(first.items, Job(top=False, after=None, before=None), api)
    except BaseException:
        if newest is not None:
            newest.stop.set()  # the first page's failure is the one reported; the newest page is not waited for
        raise
    if not first.items or (first.last and len(first.items) < PER_PAGE):
        if newest is not None:
            newest.stop.set()  # one page holds the group: the newest page is not needed, whatever it answers
        return first.items
    more_pages()
    ranges = IdRanges(first.items, per_page=PER_PAGE, readers=config.concurrency, total=first.total,
                      newest_under_way=newest is not None, requests_are_free=config.rate_limit is None)
    readers = [threading.Thread(target=_reader, args=(api, config, ranges, parsed), name=f"discovery-{n}", daemon=True)
               for n in range(config.concurrency)]
    shown = meter(progress, f"listing {config.group}", "projects", first.total, bar=bar)
    try:
        # At most fleet:gitlab.concurrency requests at once: the last reader starts when the newest page is in.
        for reader in readers[:-1] if newest is not None else readers:
            reader.start()
        if newest is not None:
            while newest.is_alive():
                newest.join(0.1)
                shown.update(ranges.found, f"{api.requests_made} requests")
                if api.cancel.is_set():  # a reader failed: its error is the one reported
                    newest.stop.set()
            if newest.answer is not None:
                ranges.commit(newest.job, *newest.answer)
            else:
                lost = newest.failure or RuntimeError("the newest page was not read")
                ranges.fail(lost, secondary=isinstance(lost, Cancelled))
                api.cancel.set()
            readers[-1].start()
        for reader in readers:
            while reader.is_alive():
                reader.join(0.1)
                shown.update(ranges.found, f"{api.requests_made} requests")
    except BaseException:
        api.cancel.set()  # e.g. Ctrl-C: the readers stop at their next wait
        if newest is not None:
            newest.stop.set()
        raise
    finally:
        shown.close()
    if ranges.failure is not None:
        raise ranges.failure
    return ranges.projects()


def _version(api: GitLabAPI, progress: Progress | None) -> str | None:
    """The instance's version, None when GET /version does not say it (settings that need it are then refused)."""
    try:
        return api.version()
    except GitLabError as err:
        if progress:
            progress(f"GET /version failed ({err}): the GitLab version is unknown, so settings that need a "
                     "minimum version are refused")
        return None


def fetch_inventory(config: GitLabConfig, token: str, *, progress: Progress | None = _stderr,
                    bar: bool | None = None) -> Inventory:
    """The group and every project GitLab lists for it, before the fleet's own filtering.

    Progress: a bar when `bar` (default: when progress goes to stderr and that is a terminal outside CI), else a
    line every few seconds through `progress`."""
    if not token:
        raise DiscoveryError("no GitLab token: set GITLAB_TOKEN; an anonymous listing shows only public projects.")
    api = open_api(config, token, progress)
    if progress:
        rate = f", at most {config.rate_limit:g} requests per second" if config.rate_limit is not None else ""
        progress(f"listing projects of GitLab group '{config.group}' at {config.api_url} ({api.policy.describe()}; "
                 f"{config.concurrency} requests at once{rate})")
    what = f"listing the projects of '{config.group}'"
    if bar is None:
        bar = progress is _stderr and stderr_is_terminal()

    def group_and_version() -> tuple[dict[str, Any], str | None]:
        return _group_object(api, config, progress), _version(api, progress)

    with ThreadPoolExecutor(1, thread_name_prefix="discovery-group") as pool:
        # A listing of more than a page reads the group and the version alongside (their errors come second).
        alongside: list[Future[tuple[dict[str, Any], str | None]]] = []
        parsed: Parsed = {}
        try:
            projects = list_projects(api, config, progress, bar=bar, parsed=parsed,
                                     more_pages=lambda: alongside.append(pool.submit(group_and_version)))
            what = f"reading group '{config.group}'"
            group, version = alongside[0].result() if alongside else group_and_version()
        except GitLabError as err:
            raise explain_failure(err, config, what, api) from err
    listing: dict[str, Any] = {"group": group, "projects": projects}
    if version is not None:
        listing["gitlab_version"] = version
    try:
        inventory = parse_inventory(listing, parsed)
    except PathClash as err:
        raise DiscoveryError(
            f"The project listing of '{config.group}' changed while it was read: {'; '.join(err.clashes)} "
            "(projects renamed meanwhile). Two roles must never trust one path; nothing was planned, run again.") from err
    if progress:
        progress(f"discovered {len(projects)} projects of {group['full_path']} ({api.requests_made} requests)")
    return inventory
