"""GitLab's REST API as discovery uses it, behind one small interface with structured errors.

python-gitlab makes each request (URL, authentication, error types). The retry policy is ours, so
that every retry is logged with its cause and wait, connection failures fail fast, and the budget
announced before the first request is an upper bound that holds, timeouts and waits included.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gitlab
import gitlab.exceptions
import requests
import requests.adapters
import urllib3.exceptions
from gitlab.utils import EncodedId

from .errors import DiscoveryError

Log = Callable[[str], None]

# Statuses worth another try: rate limiting and the server-side failures GitLab and its proxies answer.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, *range(520, 530)})


@dataclass(frozen=True)
class RetryPolicy:
    """How long one request may take: `timeout` per attempt, `max_retries` retries with waits between."""

    timeout: float = 20.0  # seconds for one attempt, from connecting to the last byte of the answer
    max_retries: int = 4  # after a timeout, 429 or 5xx
    connect_retries: int = 2  # after a refused connection or a failed DNS lookup (at most max_retries)
    first_wait: float = 1.0  # doubled after each retry
    max_wait: float = 60.0  # the longest wait, also for a server's Retry-After

    def wait(self, retry: int) -> float:
        return float(min(self.first_wait * 2 ** retry, self.max_wait))

    @property
    def budget(self) -> float:
        """The longest one request can take with its retries: every attempt times out, every wait is the longest."""
        return (self.max_retries + 1) * self.timeout + self.max_retries * self.max_wait

    def describe(self) -> str:
        return (f"timeout {self.timeout:g} s per attempt, up to {self.max_retries} retries "
                f"({min(self.connect_retries, self.max_retries)} when the server cannot be reached), "
                f"at most {self.budget:.0f} s per request")


@dataclass(frozen=True)
class ProjectsPage:
    """One page of a group's projects: the items as GitLab sent them, whether it said it was the last page, X-Total."""

    items: list[Any]
    last: bool
    total: int | None


class GitLabError(DiscoveryError):
    """A request GitLab did not answer as asked. `kind` is one of the keywords below; `status` the HTTP status."""

    KINDS = ("unauthorized", "forbidden", "not-found", "rate-limited", "server-error", "http-error",
             "timeout", "unreachable", "tls", "bad-response")

    def __init__(self, kind: str, message: str, *, path: str, status: int | None = None, retries: int = 0):
        assert kind in self.KINDS, kind
        super().__init__(message)
        self.kind = kind
        self.path = path
        self.status = status
        self.retries = retries


def pause(seconds: float, cancel: threading.Event | None = None) -> None:
    """A wait: between retries, for the request rate, after a 429 (tests replace it to see the waits without waiting).
    Ends early when `cancel` is set (another request of the listing failed)."""
    (cancel or threading.Event()).wait(seconds)


class Cancelled(Exception):
    """A request given up because another request of the same listing failed (that failure is the one reported)."""


class RequestGate:
    """When the next request may start, shared by every thread of one client.

    `rate` requests per second at most: starts are spaced 1/rate apart (so no window of one second holds more), with
    a small margin for the clock. A 429's wait holds every request, not only the one that was refused.
    """

    MARGIN = 1.05  # spacing 5% above 1/rate: a start delayed by up to 5% of a second never puts rate+1 in one second

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0.0  # the earliest start of the next request
        self._hold_until = 0.0

    def hold(self, seconds: float) -> float:
        """A 429 asked to wait: no request starts before then. Returns when this hold ends (the refused request has
        waited it out once it has paused that long; a longer hold set by another 429 still holds it)."""
        with self._lock:
            until = self._clock() + seconds
            self._hold_until = max(self._hold_until, until)
            return until

    def wait_turn(self, cancel: threading.Event, *, waited_until: float = 0.0) -> None:
        """Block until this request may start: after every hold but the one it has waited out (`waited_until`, from
        `hold`), and 1.05/rate after the previous start. The start is taken only when it comes, so a hold that
        ends (or is extended) while requests wait spaces them as before."""
        ready = 0.0  # how long this request has waited already (a pause may end early only when cancelled)
        while True:
            with self._lock:
                now = max(self._clock(), ready)
                start = max(now, self._hold_until if self._hold_until > waited_until else 0.0)
                if self.rate is not None:
                    start = max(start, self._next)
                if start <= now:
                    if self.rate is not None:
                        self._next = now + self.MARGIN / self.rate
                    break
            pause(start - now, cancel)
            if cancel.is_set():
                raise Cancelled()
            ready = start
        if cancel.is_set():
            raise Cancelled()


class _RetryableStatus(Exception):
    """Raised from the session's response hook so the retry loop sees the status and its headers."""

    def __init__(self, response: requests.Response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _raise_retryable(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    if response.status_code in RETRY_STATUSES:
        _ = response.content  # read the body so the connection goes back to the pool
        raise _RetryableStatus(response)
    return response


def _server_wait(headers: Any) -> float | None:
    """Seconds the server asked us to wait (Retry-After in seconds or as a date, or RateLimit-Reset)."""
    value = headers.get("Retry-After")
    if value is not None:
        value = value.strip()
        if value.isascii() and value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    reset = headers.get("RateLimit-Reset")
    if reset is not None and reset.strip().isascii() and reset.strip().isdigit():
        return max(0.0, float(reset) - time.time())
    return None


def _unreachable_cause(err: requests.exceptions.ConnectionError) -> str:
    """What kept the connection from being made, from the urllib3 error requests wraps."""
    reason = getattr(err.args[0], "reason", None) if err.args else None
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return "the host name cannot be resolved (DNS)"
    if isinstance(reason, urllib3.exceptions.NewConnectionError) and isinstance(reason.__cause__, ConnectionRefusedError):
        return "connection refused"
    return f"cannot connect ({reason or err})"


class GitLabAPI:
    """The few GitLab endpoints discovery reads, each with the retry policy applied."""

    def __init__(self, api_url: str, token: str, policy: RetryPolicy, log: Log | None = None, *,
                 rate: float | None = None, connections: int = 10):
        self.api_url = api_url
        self.policy = policy
        self._log = log
        self.gate = RequestGate(rate)
        self._slots = threading.BoundedSemaphore(connections)  # requests in flight at once, whichever thread asks
        self.cancel = threading.Event()  # set when a listing gives up: requests under way stop at their next wait
        self._count = 0
        self._count_lock = threading.Lock()
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=connections)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._gl = gitlab.Gitlab(api_url, private_token=token, timeout=policy.timeout, retry_transient_errors=False,
                                 session=session)
        self._gl.session.hooks["response"].append(_raise_retryable)

    @property
    def requests_made(self) -> int:
        """Requests sent so far, retries included."""
        return self._count

    def get(self, path: str, query: dict[str, Any] | None = None, *,
            cancel: threading.Event | None = None) -> tuple[Any, Mapping[str, str]]:
        """GET `path` (below /api/v4): the decoded JSON and the headers, retrying as the policy allows. Given up
        (Cancelled) at its next wait once `cancel` (default: the client's `cancel`) is set."""
        stop = cancel or self.cancel
        policy = self.policy
        retries = 0
        waited_until = 0.0  # the hold this request's own 429 set, once it has waited it out
        while True:
            status: int | None = None
            try:
                response = self._attempt_in_turn(path, query or {}, stop, waited_until=waited_until)
            except _RetryableStatus as err:
                status = err.response.status_code
                kind = "rate-limited" if status == 429 else "server-error"
                cause = f"HTTP {status} {err.response.reason or ''}".rstrip()
                limit = policy.max_retries
                asked = _server_wait(err.response.headers)
                wait = policy.wait(retries) if asked is None else asked
                if asked is not None and asked > policy.max_wait:
                    raise GitLabError(kind, f"GitLab answered {cause} to GET {path} and asked to wait {asked:.0f} s, "
                                            f"longer than the {policy.max_wait:.0f} s this tool waits",
                                      path=path, status=status, retries=retries) from None
            except requests.exceptions.SSLError as err:
                raise GitLabError("tls", f"TLS failed for GET {path}: {err}", path=path) from err
            except requests.exceptions.Timeout:
                kind, cause, limit, wait = "timeout", f"no answer within {policy.timeout:g} s", policy.max_retries, policy.wait(retries)
            except requests.exceptions.ChunkedEncodingError:
                kind, cause, limit, wait = "server-error", "the answer was cut off", policy.max_retries, policy.wait(retries)
            except requests.exceptions.ConnectionError as err:
                kind, cause = "unreachable", _unreachable_cause(err)
                limit, wait = min(policy.connect_retries, policy.max_retries), policy.wait(retries)
            except gitlab.exceptions.GitlabAuthenticationError as err:
                raise GitLabError("unauthorized", f"GET {path}: 401 Unauthorized", path=path, status=401) from err
            except gitlab.exceptions.GitlabHttpError as err:
                status = err.response_code
                kind = {403: "forbidden", 404: "not-found"}.get(status or 0, "http-error")
                raise GitLabError(kind, f"GET {path}: HTTP {status} {err.error_message}", path=path, status=status) from err
            except gitlab.exceptions.GitlabError as err:  # e.g. a redirect python-gitlab refuses to follow
                raise GitLabError("http-error", f"GET {path}: {err}", path=path) from err
            else:
                try:
                    return response.json(), response.headers
                except ValueError as err:
                    raise GitLabError("bad-response", f"GET {path} did not answer JSON (is {self.api_url} the "
                                                      f"GitLab API?)", path=path, status=response.status_code) from err
            if retries >= limit:
                raise GitLabError(kind, f"GET {path}: {cause}, {retries} retries spent", path=path,
                                  status=status, retries=retries)
            retries += 1
            if kind == "rate-limited":  # every request of this client waits, not only this one
                waited_until = self.gate.hold(wait)
            if self._log:
                everyone = " (all requests wait)" if kind == "rate-limited" else ""
                self._log(f"GitLab GET {path}: {cause}; retry {retries} of {limit} in {wait:.1f} s{everyone}")
            pause(wait, stop)
            if stop.is_set():
                raise Cancelled()

    def _attempt_in_turn(self, path: str, query: dict[str, Any], stop: threading.Event, *,
                         waited_until: float) -> requests.Response:
        """One attempt once a slot is free (at most `connections` at once) and the gate lets it start."""
        with self._slots:
            self.gate.wait_turn(stop, waited_until=waited_until)
            with self._count_lock:
                self._count += 1
            return self._attempt(path, query)

    def _attempt(self, path: str, query: dict[str, Any]) -> requests.Response:
        """One request, given up after `timeout` seconds in all.

        requests' own timeout bounds only each wait for the next bytes (a server sending a byte at a time
        never trips it), so the request runs in a worker thread and is abandoned at the deadline.
        """
        answer: list[requests.Response] = []
        failure: list[BaseException] = []

        def request() -> None:
            try:
                answer.append(self._gl.http_request("get", path, query_data=query, obey_rate_limit=False,
                                                    retry_transient_errors=False, max_retries=0))
            except BaseException as err:  # handed over to the caller's thread below
                failure.append(err)

        worker = threading.Thread(target=request, name=f"GitLab GET {path}", daemon=True)
        worker.start()
        worker.join(self.policy.timeout)
        if worker.is_alive():
            raise requests.exceptions.Timeout(f"no complete answer within {self.policy.timeout:g} s")
        if failure:
            raise failure[0]
        return answer[0]

    def group(self, ref: str) -> dict[str, Any]:
        data, _ = self.get(f"/groups/{EncodedId(ref)}", {"with_projects": False})
        if not isinstance(data, dict):
            raise GitLabError("bad-response", f"GET /groups/{ref} did not answer a group object", path=f"/groups/{ref}")
        return data

    def version(self) -> str:
        """The instance's version (GET /version), e.g. "18.7.1-ee"."""
        data, _ = self.get("/version")
        version = data.get("version") if isinstance(data, dict) else None
        if not isinstance(version, str) or not version:
            raise GitLabError("bad-response", "GET /version did not answer a version", path="/version")
        return version

    def group_projects(self, group: str, *, after: int | None, include_subgroups: bool, with_shared: bool,
                       per_page: int, before: int | None = None, descending: bool = False,
                       cancel: threading.Event | None = None) -> tuple[list[Any], bool]:
        """The first page of the group's projects with ids above `after` and below `before` (GitLab's id_after and
        id_before), in ascending ids (descending: newest first), and whether GitLab says it was the last page
        (X-Next-Page present and empty)."""
        page = self.projects_page(group, after=after, include_subgroups=include_subgroups, with_shared=with_shared,
                                  per_page=per_page, before=before, descending=descending, cancel=cancel)
        return page.items, page.last

    def projects_page(self, group: str, *, after: int | None, include_subgroups: bool, with_shared: bool,
                      per_page: int, before: int | None = None, descending: bool = False,
                      cancel: threading.Event | None = None) -> ProjectsPage:
        """group_projects' page with GitLab's X-Total (None above 10,000 records, where GitLab omits it)."""
        query: dict[str, Any] = {"include_subgroups": include_subgroups, "with_shared": with_shared,
                                 "order_by": "id", "sort": "desc" if descending else "asc", "per_page": per_page, "page": 1}
        if after is not None:
            query["id_after"] = after
        if before is not None:
            query["id_before"] = before
        path = f"/groups/{EncodedId(group)}/projects"
        data, headers = self.get(path, query, cancel=cancel)
        if not isinstance(data, list):
            raise GitLabError("bad-response", f"GET {path} did not answer a list of projects", path=path)
        total = headers.get("X-Total", "").strip()
        return ProjectsPage(data, headers.get("X-Next-Page") == "",
                            int(total) if total.isascii() and total.isdigit() else None)

    def project_variable(self, project: int, key: str, environment_scope: str) -> dict[str, Any] | None:
        """The project's CI/CD variable `key` in exactly `environment_scope`, or None when GitLab answers 404.

        Reading variables needs the Maintainer role: a token without it gets GitLabError kind "forbidden"."""
        path = f"/projects/{project}/variables/{EncodedId(key)}"
        try:
            data, _ = self.get(path, {"filter[environment_scope]": environment_scope})
        except GitLabError as err:
            if err.kind == "not-found":
                return None
            raise
        if not isinstance(data, dict) or data.get("key") != key:
            raise GitLabError("bad-response", f"GET {path} did not answer the variable {key}", path=path)
        if data.get("environment_scope") != environment_scope:  # a GitLab that ignores the filter
            raise GitLabError("bad-response", f"GET {path} answered the variable of scope "
                                              f"{data.get('environment_scope')!r} when asked for {environment_scope!r}",
                              path=path)
        return data
