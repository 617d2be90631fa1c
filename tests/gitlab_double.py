"""A GitLab REST API double: a real HTTP server on 127.0.0.1 for the endpoints discovery uses.

It serves groups and `GET /groups/:id/projects` with GitLab's semantics (include_subgroups off by
default, with_shared ON by default, `id_after`/`id_before`, offset pagination with
X-Page/X-Next-Page/X-Total/Link headers, at most 100 per page, totals omitted above
`totals_threshold` records as GitLab does above 10,000), authentication errors, and injectable
faults: 5xx, 429 with or without Retry-After, and latency. `latency` delays every answer (a distant
GitLab); `static` promises the projects do not change, so listings are answered from an index
(benchmarks of 10,000 projects). `arrivals` holds each request's arrival time (time.monotonic()). `on_listing` runs before each listing
request is answered, so a test can change the group while it is read.

Also served, for the CI/CD variables and the merge request notes and drift issues:
- `GET /user` (the token's user, from `users`, else a project bot user);
- `GET /projects/:id/variables` (paginated) and `GET /projects/:id/variables/:key` with
  `filter[environment_scope]`: 404 "404 Variable Not Found" when absent, 409 when the key exists in
  several scopes and no filter picks one (GitLab's `find_variable`);
- merge request notes: `GET/POST /projects/:id/merge_requests/:iid/notes`, `PUT .../notes/:note_id`
  (only the note's author may edit it: 403 otherwise);
- issues: `GET/POST /projects/:id/issues` (filters state, labels, author_id, search/in),
  `PUT /projects/:id/issues/:iid` (state_event close/reopen, description, title, labels,
  add_labels) and `POST /projects/:id/issues/:iid/notes`;
- note bodies over `note_limit` and descriptions over `description_limit` characters are answered 400
  with GitLab's messages;
- `GET /projects/:id` and `PUT /projects/:id` with `ci_id_token_sub_claim_components` (validated by the
  rules of `version`: before 18.7 only project_path first, then ref_type/ref; from 18.7 project_path or
  project_id first and ref_protected, environment_protected, deployment_tier too). A project carries the
  attribute only once it is given (make_project(sub_claim_components=...) or a PUT); the listing and
  `GET /projects/:id` hide it for the ids in `hidden_sub_claims` (a token that is not Maintainer there),
  whose PUT answers 403.
Every request is recorded in `requests` (path, query) and, with its method and body, in `calls`.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

TRUE = {"true", "True", "1", "yes"}
SUB_CLAIM = "ci_id_token_sub_claim_components"
SUB_CLAIM_COMPONENTS_18_7 = ("project_path", "project_id", "ref_type", "ref", "ref_protected", "environment_protected",
                             "deployment_tier")


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # socketserver's 5 drops connections beyond it: a client then waits a second to retry


@dataclass
class Fault:
    """Applied to the next `count` matching requests: an error status, a Retry-After, or a delay."""

    count: int
    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    drip: float = 0.0  # seconds between the bytes of the answer (a server that never quite times out)
    path_contains: str = "/projects"
    method: str | None = None  # only requests with this method (GET, POST, PUT); None: any
    query: dict[str, str] | None = None  # only requests whose query holds these values, e.g. {"sort": "desc"}


@dataclass(frozen=True)
class Call:
    """One request as the double received it: method, path, query and the decoded body (JSON or form)."""

    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]


BOT_USER: dict[str, Any] = {"id": 9001, "username": "project_7_bot_0a1b2c", "name": "fleet notes", "state": "active",
                            "bot": True}


@dataclass
class GitLabDouble:
    groups: list[dict[str, Any]] = field(default_factory=list)
    projects: list[dict[str, Any]] = field(default_factory=list)
    tokens: set[str] | None = None  # None: no token needed; else 401 for any other token
    forbidden_tokens: set[str] = field(default_factory=set)  # valid, but 403 on projects
    totals_threshold: int = 10_000  # GitLab omits X-Total/X-Total-Pages above this many records
    honours_id_after: bool = True  # False: a server that ignores id_after/id_before
    serve_group: bool = True  # False: GET /groups/:id answers 404 (an API that serves only the listing)
    prefix: str = ""  # GitLab served under a path (e.g. "/gitlab"): its API is at <prefix>/api/v4, elsewhere an HTML 404
    version: str = "17.11.2"  # GET /version
    version_body: Any = None  # answer GET /version with this instead (a server that is not GitLab)
    faults: list[Fault] = field(default_factory=list)
    on_listing: Callable[[int], None] | None = None  # called with the request's number (1, 2, ...) before answering
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    # --- CI/CD variables, merge request notes and issues, by project id ----------------
    variables: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # see make_variable
    merge_requests: dict[int, set[int]] = field(default_factory=dict)  # project id -> MR iids that exist
    mr_notes: dict[tuple[int, int], list[dict[str, Any]]] = field(default_factory=dict)  # (project, iid) -> notes
    issues: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # project id -> issues (see make_issue)
    issue_notes: dict[tuple[int, int], list[dict[str, Any]]] = field(default_factory=dict)  # (project, iid) -> comments
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> its user (default BOT_USER)
    note_limit: int = 1_000_000  # characters in a note body (GitLab's Note validation)
    description_limit: int = 1_048_576  # characters in an issue description (1 MiB, GitLab 13.4+)
    calls: list[Call] = field(default_factory=list)
    hidden_sub_claims: set[int] = field(default_factory=set)  # ids whose sub claim components the token cannot see
    latency: float = 0.0  # seconds before every answer
    static: bool = False  # the projects never change: listings come from an index built once
    keep_alive: bool = False  # HTTP/1.1: a connection serves many requests, as GitLab's do
    arrivals: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._listings = 0
        self._stopped = threading.Event()
        self._index: dict[tuple[Any, ...], tuple[list[int], list[dict[str, Any]]]] = {}
        self._encodings: dict[int, bytes] = {}

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> GitLabDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    double._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout under test) before the answer was written

            do_POST = do_PUT = do_DELETE = do_GET
            protocol_version = "HTTP/1.1" if double.keep_alive else "HTTP/1.0"
            disable_nagle_algorithm = True  # else a kept-alive answer's last segment waits for the client's delayed ACK

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()  # ends delays and drips still under way in handler threads
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> GitLabDouble:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- data ------------------------------------------------------------------------
    def group(self, ref: str) -> dict[str, Any] | None:
        ref = unquote(ref)
        for g in self.groups:
            if str(g["id"]) == ref or g["full_path"].casefold() == ref.casefold():
                return g
        return None

    def _descendants(self, group: dict[str, Any]) -> set[str]:
        prefix = group["full_path"].casefold() + "/"
        return {g["full_path"].casefold() for g in self.groups if g["full_path"].casefold().startswith(prefix)}

    def listing(self, group: dict[str, Any], query: dict[str, str]) -> list[dict[str, Any]]:
        if not self.static:
            return self._scan(group, query)
        order = (query.get("order_by", "created_at"), query.get("sort", "desc"))
        key = (group["id"], query.get("include_subgroups"), query.get("with_shared"), query.get("archived"), order)
        with self._lock:
            if key not in self._index:
                unbounded = {k: v for k, v in query.items() if k not in ("id_after", "id_before")}
                items = self._scan(group, unbounded)
                self._index[key] = ([p["id"] for p in items], items)
            ids, items = self._index[key]
        after, before = query.get("id_after"), query.get("id_before")
        if (after is None and before is None) or not self.honours_id_after:
            return items
        if order[0] != "id":
            return [p for p in items if (after is None or p["id"] > int(after)) and (before is None or p["id"] < int(before))]
        descending = order[1] == "desc"
        keys = [-i for i in ids] if descending else ids  # bisect needs ascending keys
        low, high = 0, len(ids)
        if after is not None:
            cut = bisect.bisect_right(keys, int(after)) if not descending else bisect.bisect_left(keys, -int(after))
            low, high = (cut, high) if not descending else (low, cut)
        if before is not None:
            cut = bisect.bisect_left(keys, int(before)) if not descending else bisect.bisect_right(keys, -int(before))
            low, high = (low, min(high, cut)) if not descending else (max(low, cut), high)
        return items[low:high]

    def _scan(self, group: dict[str, Any], query: dict[str, str]) -> list[dict[str, Any]]:
        namespaces = {group["full_path"].casefold()}
        if query.get("include_subgroups", "false") in TRUE:
            namespaces |= self._descendants(group)
        with_shared = query.get("with_shared", "true") in TRUE  # GitLab's default is true
        out = []
        for p in self.projects:
            own = p["namespace"]["full_path"].casefold() in namespaces
            shared = with_shared and any(s["group_id"] == group["id"] for s in p.get("shared_with_groups", []))
            if not (own or shared):
                continue
            if "archived" in query and (query["archived"] in TRUE) != p.get("archived", False):
                continue
            if self.honours_id_after and "id_after" in query and p["id"] <= int(query["id_after"]):
                continue
            if self.honours_id_after and "id_before" in query and p["id"] >= int(query["id_before"]):
                continue
            out.append(self.shown(p))
        reverse = query.get("sort", "desc") == "desc"
        key = query.get("order_by", "created_at")
        out.sort(key=lambda p: p["id"] if key == "id" else (p.get("created_at", ""), p["id"]), reverse=reverse)
        return out

    def shown(self, project: dict[str, Any]) -> dict[str, Any]:
        """The project as this token sees it: without its sub claim components where it is not Maintainer."""
        if project["id"] in self.hidden_sub_claims and SUB_CLAIM in project:
            return {k: v for k, v in project.items() if k != SUB_CLAIM}
        return project

    def sub_claim_problems(self, components: Any) -> list[str]:
        """GitLab's validation messages for a new value of ci_id_token_sub_claim_components."""
        modern = tuple(int(x) for x in self.version.split(".")[:2]) >= (18, 7)
        allowed = SUB_CLAIM_COMPONENTS_18_7 if modern else ("project_path", "ref_type", "ref")
        first = ("project_path", "project_id") if modern else ("project_path",)
        if not isinstance(components, list) or not components:
            return ["is too short (minimum is 1 character)"]
        problems = [] if components[0] in first else [f"{' or '.join(first)} must be the first element of the sub claim"]
        return problems + [f"{c} is not an allowed sub claim component" for c in components if c not in allowed]

    # --- HTTP ------------------------------------------------------------------------
    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body = self._body(req)
        with self._lock:
            self.arrivals.append(time.monotonic())
            self.requests.append((parts.path, query))
            self.calls.append(Call(req.command, parts.path, query, body))
            fault = next((f for f in self.faults if f.count > 0 and f.path_contains in parts.path
                          and f.method in (None, req.command)
                          and all(query.get(k) == v for k, v in (f.query or {}).items())), None)
            if fault:
                fault.count -= 1
        if self.latency and self._stopped.wait(self.latency):
            return None
        if fault and fault.delay and self._stopped.wait(fault.delay):
            return None
        if fault and fault.drip:
            return self._drip(req, fault.drip)
        if fault and fault.status:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return self._send(req, fault.status, {"message": f"{fault.status} injected"}, headers)

        if not parts.path.startswith(self.prefix + "/api/v4/"):  # outside GitLab's API: the web app's 404 page
            return self._send(req, 404, "<!DOCTYPE html><html><body>The page could not be found</body></html>",
                              content_type="text/html")
        token = req.headers.get("PRIVATE-TOKEN")
        if self.tokens is not None and token not in self.tokens:
            return self._send(req, 401, {"message": "401 Unauthorized"})
        segments = parts.path.removeprefix(self.prefix).split("/")
        if req.command != "GET" or (segments[1:3] == ["api", "v4"] and segments[3:4] in (["user"], ["projects"])):
            with self._lock:  # the handlers below read and change the double's data
                return self._handle_projects(req, token, segments[3:], query, body)
        if segments[1:] == ["api", "v4", "version"]:
            body = self.version_body if self.version_body is not None else {"version": self.version, "revision": "0123abcd"}
            return self._send(req, 200, body)
        # /api/v4/groups/<id>[/projects]
        if len(segments) >= 5 and segments[1:4] == ["api", "v4", "groups"]:
            group = self.group(segments[4])
            if group is None:
                return self._send(req, 404, {"message": "404 Group Not Found"})
            if len(segments) == 5:
                return self._send(req, 200, group) if self.serve_group else self._send(req, 404, {"message": "404 Not Found"})
            if segments[5:] == ["projects"]:
                if token in self.forbidden_tokens:
                    return self._send(req, 403, {"message": "403 Forbidden"})
                if self.on_listing:
                    with self._lock:
                        self._listings += 1
                        number = self._listings
                    self.on_listing(number)
                return self._page(req, parts.path, query, self.listing(group, query))
        return self._send(req, 404, {"error": "404 Not Found"})  # GitLab's answer to an unknown API route

    # --- /user and /projects/:id/... ----------------------------------------------------
    @staticmethod
    def _body(req: BaseHTTPRequestHandler) -> dict[str, Any]:
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        if not raw:
            return {}
        if (req.headers.get("Content-Type") or "").startswith("application/json"):
            data = json.loads(raw)
            return data if isinstance(data, dict) else {"_": data}
        return {k: v[-1] for k, v in parse_qs(raw.decode()).items()}

    def user(self, token: str | None) -> dict[str, Any]:
        return self.users.get(token or "", BOT_USER)

    def project_id(self, ref: str) -> int | None:
        """The id of the project `ref` names (an id or a URL-encoded path), if the double knows it."""
        ref = unquote(ref)
        known = {p["id"] for p in self.projects} | set(self.variables) | set(self.merge_requests) | set(self.issues)
        if ref.isdigit():
            return int(ref) if int(ref) in known else None
        return next((p["id"] for p in self.projects if p["path_with_namespace"] == ref), None)

    def _handle_projects(self, req: BaseHTTPRequestHandler, token: str | None, route: list[str],
                         query: dict[str, str], body: dict[str, Any]) -> None:
        method = req.command
        args = {**query, **body}  # GitLab reads parameters from either
        if route == ["user"] and method == "GET":
            return self._send(req, 200, self.user(token))
        if len(route) == 2 and route[0] == "projects" and method in ("GET", "PUT"):
            return self._project(req, token, route[1], method, body)
        if len(route) < 3 or route[0] != "projects":
            return self._send(req, 404, {"error": "404 Not Found"})
        project = self.project_id(route[1])
        if project is None:
            return self._send(req, 404, {"message": "404 Project Not Found"})
        if token in self.forbidden_tokens:
            return self._send(req, 403, {"message": "403 Forbidden"})
        rest = route[2:]
        if rest[0] == "variables" and method == "GET":
            return self._variables(req, project, rest[1:], query)
        if rest[0] == "merge_requests" and len(rest) >= 3 and rest[2] == "notes":
            return self._mr_notes(req, token, project, rest[1], rest[3:], args)
        if rest[0] == "issues":
            return self._issues(req, token, project, rest[1:], args)
        return self._send(req, 404, {"error": "404 Not Found"})

    def _project(self, req: BaseHTTPRequestHandler, token: str | None, ref: str, method: str,
                 body: dict[str, Any]) -> None:
        project = next((p for p in self.projects if p["id"] == self.project_id(ref)), None)
        if project is None:
            return self._send(req, 404, {"message": "404 Project Not Found"})
        if token in self.forbidden_tokens:
            return self._send(req, 403, {"message": "403 Forbidden"})
        if method == "PUT" and SUB_CLAIM in body:
            if project["id"] in self.hidden_sub_claims:
                return self._send(req, 403, {"message": "403 Forbidden"})
            problems = self.sub_claim_problems(body[SUB_CLAIM])
            if problems:
                return self._send(req, 400, {"message": {"ci_cd_settings.id_token_sub_claim_components": problems}})
            project[SUB_CLAIM] = list(body[SUB_CLAIM])
        return self._send(req, 200, self.shown(project))

    def _variables(self, req: BaseHTTPRequestHandler, project: int, rest: list[str], query: dict[str, str]) -> None:
        variables = self.variables.get(project, [])
        if not rest:
            return self._page(req, urlsplit(req.path).path, query, variables)
        key = unquote(rest[0])
        scope = query.get("filter[environment_scope]")
        found = [v for v in variables if v["key"] == key and (scope is None or v["environment_scope"] == scope)]
        if not found:
            return self._send(req, 404, {"message": "404 Variable Not Found"})
        if len(found) > 1:
            return self._send(req, 409, {"message": "There are multiple variables with provided parameters. "
                                                    "Please use 'filter[environment_scope]'"})
        return self._send(req, 200, found[0])

    def _too_long(self, text: str, what: str) -> dict[str, Any] | None:
        """GitLab's 400 answer for a note or a description over its limit (None when within it)."""
        if what == "note" and len(text) > self.note_limit:
            return {"message": f'400 Bad request - Note {{:note=>["is too long (maximum is {self.note_limit} characters)"]}}'}
        if what == "description" and len(text) > self.description_limit:
            return {"message": {"description": [f"is too long (maximum is {self.description_limit} characters)"]}}
        return None

    def _author(self, token: str | None) -> dict[str, Any]:
        user = self.user(token)
        return {k: user[k] for k in ("id", "username", "name", "state")}

    def _mr_notes(self, req: BaseHTTPRequestHandler, token: str | None, project: int, iid: str, rest: list[str],
                  args: dict[str, Any]) -> None:
        if not iid.isdigit() or int(iid) not in self.merge_requests.get(project, set()):
            return self._send(req, 404, {"message": "404 Not found"})
        notes = self.mr_notes.setdefault((project, int(iid)), [])
        if not rest and req.command == "GET":
            ordered = sorted(notes, key=lambda n: n[args.get("order_by", "created_at")],
                             reverse=args.get("sort", "desc") == "desc")
            return self._page(req, urlsplit(req.path).path, {k: str(v) for k, v in args.items()}, ordered)
        if not rest and req.command == "POST":
            text = str(args.get("body", ""))
            if not text:
                return self._send(req, 400, {"message": "400 Bad request - Note can't be blank"})
            if (error := self._too_long(text, "note")) is not None:
                return self._send(req, 400, error)
            note = make_note(self._next_note_id(), text, self._author(token), noteable_iid=int(iid))
            notes.append(note)
            return self._send(req, 201, note)
        if len(rest) == 1 and req.command == "PUT":
            note = next((n for n in notes if str(n["id"]) == rest[0]), None)
            if note is None:
                return self._send(req, 404, {"message": "404 Note Not Found"})
            if note["author"]["id"] != self.user(token)["id"]:
                return self._send(req, 403, {"message": "403 Forbidden"})
            text = str(args.get("body", ""))
            if (error := self._too_long(text, "note")) is not None:
                return self._send(req, 400, error)
            note.update(body=text, updated_at=_now())
            return self._send(req, 200, note)
        return self._send(req, 404, {"error": "404 Not Found"})

    def _next_note_id(self) -> int:
        every = [n for notes in (*self.mr_notes.values(), *self.issue_notes.values()) for n in notes]
        return max((n["id"] for n in every), default=500) + 1

    def _issue_listing(self, project: int, args: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        wanted = [label for label in str(args.get("labels", "")).split(",") if label]
        for issue in self.issues.get(project, []):
            if args.get("state", "all") not in ("all", issue["state"]):
                continue
            if not set(wanted) <= set(issue["labels"]):
                continue
            if "author_id" in args and str(issue["author"]["id"]) != str(args["author_id"]):
                continue
            if "search" in args:
                fields = str(args.get("in", "title,description")).split(",")
                if not any(str(args["search"]).casefold() in (issue.get(f) or "").casefold() for f in fields):
                    continue
            out.append(issue)
        return sorted(out, key=lambda i: (i[args.get("order_by", "created_at")], i["iid"]),
                      reverse=args.get("sort", "desc") == "desc")

    def _issues(self, req: BaseHTTPRequestHandler, token: str | None, project: int, rest: list[str],
                args: dict[str, Any]) -> None:
        issues = self.issues.setdefault(project, [])
        if not rest and req.command == "GET":
            return self._page(req, urlsplit(req.path).path, {k: str(v) for k, v in args.items()},
                              self._issue_listing(project, args))
        if not rest and req.command == "POST":
            if not args.get("title"):
                return self._send(req, 400, {"message": "400 Bad request - title is missing"})
            if (error := self._too_long(str(args.get("description", "")), "description")) is not None:
                return self._send(req, 400, error)
            issue = make_issue(project, max((i["iid"] for i in issues), default=0) + 1, str(args["title"]),
                               str(args.get("description", "")), self._author(token),
                               labels=_labels(args.get("labels", "")))
            issues.append(issue)
            return self._send(req, 201, issue)
        issue = next((i for i in issues if rest and str(i["iid"]) == rest[0]), None)
        if issue is None:
            return self._send(req, 404, {"message": "404 Issue Not Found"})
        if len(rest) == 1 and req.command == "GET":
            return self._send(req, 200, issue)
        if len(rest) == 1 and req.command == "PUT":
            if "description" in args and (error := self._too_long(str(args["description"]), "description")):
                return self._send(req, 400, error)
            for key in ("title", "description"):
                if key in args:
                    issue[key] = str(args[key])
            if "labels" in args:
                issue["labels"] = _labels(args["labels"])
            if "add_labels" in args:
                issue["labels"] = sorted({*issue["labels"], *_labels(args["add_labels"])})
            event = args.get("state_event")
            if event == "close" and issue["state"] == "opened":
                issue.update(state="closed", closed_at=_now(), closed_by=self._author(token))
            elif event == "reopen" and issue["state"] == "closed":
                issue.update(state="opened", closed_at=None, closed_by=None)
            issue["updated_at"] = _now()
            return self._send(req, 200, issue)
        if rest[1:] == ["notes"] and req.command == "POST":
            text = str(args.get("body", ""))
            if (error := self._too_long(text, "note")) is not None:
                return self._send(req, 400, error)
            note = make_note(self._next_note_id(), text, self._author(token), noteable_iid=issue["iid"],
                             noteable_type="Issue")
            self.issue_notes.setdefault((project, issue["iid"]), []).append(note)
            issue["user_notes_count"] = issue.get("user_notes_count", 0) + 1
            return self._send(req, 201, note)
        return self._send(req, 404, {"error": "404 Not Found"})

    def _page(self, req: BaseHTTPRequestHandler, path: str, query: dict[str, str], items: list[dict[str, Any]]) -> None:
        page = max(1, int(query.get("page", "1")))
        per_page = min(100, max(1, int(query.get("per_page", "20"))))
        total_pages = max(1, -(-len(items) // per_page))
        body = items[(page - 1) * per_page: page * per_page]
        base = f"{self.url}{path}"

        def link(p: int, rel: str) -> str:
            return f'<{base}?{urlencode({**query, "page": p, "per_page": per_page})}>; rel="{rel}"'

        links = []
        if page < total_pages:
            links.append(link(page + 1, "next"))
        if page > 1:
            links.append(link(page - 1, "prev"))
        links.append(link(1, "first"))
        headers = {"X-Page": str(page), "X-Per-Page": str(per_page),
                   "X-Next-Page": str(page + 1) if page < total_pages else "",
                   "X-Prev-Page": str(page - 1) if page > 1 else ""}
        if len(items) <= self.totals_threshold:
            headers.update({"X-Total": str(len(items)), "X-Total-Pages": str(total_pages)})
            links.append(link(total_pages, "last"))
        headers["Link"] = ", ".join(links)
        if self.static:  # each project encoded once: the double must not be what a benchmark measures
            self._send(req, 200, b"[" + b",".join(self._encoded(p) for p in body) + b"]", headers)
        else:
            self._send(req, 200, body, headers)

    def _encoded(self, item: dict[str, Any]) -> bytes:
        key = id(item)
        if key not in self._encodings:
            self._encodings[key] = json.dumps(item).encode()
        return self._encodings[key]

    def _drip(self, req: BaseHTTPRequestHandler, interval: float) -> None:
        data = json.dumps([{"id": n} for n in range(200)]).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        for byte in data:
            req.wfile.write(bytes([byte]))
            req.wfile.flush()
            if self._stopped.wait(interval):
                return

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        req.send_response(status)
        req.send_header("Content-Type", content_type)
        req.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            req.send_header(k, v)
        req.end_headers()
        req.wfile.write(data)


def busiest_second(times: list[float]) -> int:
    """The most arrivals within any one second (a window [t, t + 1) starting at each arrival)."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


# --- building realistic payloads ---------------------------------------------------------
_clock = [0]


def _now() -> str:
    """Distinct, increasing timestamps, so that orderings by time are stable."""
    _clock[0] += 1
    return datetime.fromtimestamp(1_767_225_600 + _clock[0], tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _labels(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    return sorted({str(v).strip() for v in items if str(v).strip()})


def make_variable(key: str, value: str, environment_scope: str = "*", *, protected: bool = False, masked: bool = False,
                  hidden: bool = False, raw: bool = False, variable_type: str = "env_var",
                  description: str | None = None) -> dict[str, Any]:
    """A project CI/CD variable as GET /projects/:id/variables answers it (a hidden variable's value is null)."""
    return {"variable_type": variable_type, "key": key, "value": None if hidden else value, "protected": protected,
            "masked": masked, "hidden": hidden, "raw": raw, "environment_scope": environment_scope,
            "description": description}


def make_user(user_id: int, username: str, *, bot: bool = False) -> dict[str, Any]:
    return {"id": user_id, "username": username, "name": username, "state": "active", "bot": bot}


def make_note(note_id: int, body: str, author: dict[str, Any], *, noteable_iid: int = 1, system: bool = False,
              noteable_type: str = "MergeRequest") -> dict[str, Any]:
    """A note as the notes API answers it."""
    now = _now()
    return {"id": note_id, "type": None, "body": body, "attachment": None,
            "author": {k: author[k] for k in ("id", "username", "name", "state")}, "created_at": now,
            "updated_at": now, "system": system, "noteable_id": 10_000 + noteable_iid, "noteable_type": noteable_type,
            "noteable_iid": noteable_iid, "resolvable": False, "confidential": False, "internal": False}


def make_issue(project_id: int, iid: int, title: str, description: str, author: dict[str, Any], *,
               state: str = "opened", labels: list[str] = ()) -> dict[str, Any]:
    """An issue as the issues API answers it."""
    now = _now()
    return {"id": project_id * 100_000 + iid, "iid": iid, "project_id": project_id, "title": title,
            "description": description, "state": state, "created_at": now, "updated_at": now,
            "closed_at": now if state == "closed" else None, "closed_by": None, "labels": sorted(labels),
            "author": {k: author[k] for k in ("id", "username", "name", "state")}, "user_notes_count": 0,
            "web_url": f"https://gitlab.example.com/fleet/-/issues/{iid}"}
def make_group(group_id: int, full_path: str, parent_id: int | None = None) -> dict[str, Any]:
    name = full_path.rsplit("/", 1)[-1]
    return {"id": group_id, "name": name, "path": name, "full_path": full_path, "full_name": full_path.replace("/", " / "),
            "parent_id": parent_id, "visibility": "private", "web_url": f"https://gitlab.example.com/groups/{quote(full_path)}"}


def make_project(project_id: int, path: str, groups: list[dict[str, Any]], *, default_branch: str | None = "main",
                 archived: bool = False, pending_deletion: bool = False, shared_with: list[dict[str, Any]] = (),
                 topics: list[str] = (), sub_claim_components: list[str] | None = None) -> dict[str, Any]:
    namespace_path, _, name = path.rpartition("/")
    namespace = next(g for g in groups if g["full_path"] == namespace_path)
    project = {
        "id": project_id, "name": name, "path": name, "path_with_namespace": path,
        "name_with_namespace": path.replace("/", " / "), "description": None,
        "default_branch": default_branch, "empty_repo": default_branch is None, "archived": archived,
        "visibility": "private", "topics": list(topics), "tag_list": list(topics),
        "created_at": f"2024-01-01T00:00:{project_id % 60:02d}.000Z",
        "web_url": f"https://gitlab.example.com/{path}",
        "http_url_to_repo": f"https://gitlab.example.com/{path}.git",
        "namespace": {"id": namespace["id"], "name": namespace["name"], "path": namespace["path"], "kind": "group",
                      "full_path": namespace["full_path"], "parent_id": namespace["parent_id"]},
        "shared_with_groups": [{"group_id": g["id"], "group_name": g["name"], "group_full_path": g["full_path"],
                                "group_access_level": 30, "expires_at": None} for g in shared_with],
    }
    if pending_deletion:
        project["marked_for_deletion_on"] = "2026-11-20"
    if sub_claim_components is not None:  # listed to Maintainers (GitLab 17.10+)
        project[SUB_CLAIM] = list(sub_claim_components)
    return project
