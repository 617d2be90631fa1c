"""A GitLab REST API double: a real HTTP server on 127.0.0.1 for the endpoints discovery uses.

It serves groups and `GET /groups/:id/projects` with GitLab's semantics (include_subgroups off by
default, with_shared ON by default, `id_after`/`id_before`, offset pagination with
X-Page/X-Next-Page/X-Total/Link headers, at most 100 per page, totals omitted above
`totals_threshold` records as GitLab does above 10,000), authentication errors, and injectable
faults: 5xx, 429 with or without Retry-After, and latency. `on_listing` runs before each listing
request is answered, so a test can change the group while it is read.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

TRUE = {"true", "True", "1", "yes"}


@dataclass
class Fault:
    """Applied to the next `count` matching requests: an error status, a Retry-After, or a delay."""

    count: int
    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    drip: float = 0.0  # seconds between the bytes of the answer (a server that never quite times out)
    path_contains: str = "/projects"


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

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._listings = 0
        self._stopped = threading.Event()

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> "GitLabDouble":
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                try:
                    double._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout under test) before the answer was written

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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

    def __enter__(self) -> "GitLabDouble":
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
            out.append(p)
        reverse = query.get("sort", "desc") == "desc"
        key = query.get("order_by", "created_at")
        out.sort(key=lambda p: p["id"] if key == "id" else (p.get("created_at", ""), p["id"]), reverse=reverse)
        return out

    # --- HTTP ------------------------------------------------------------------------
    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append((parts.path, query))
            fault = next((f for f in self.faults if f.count > 0 and f.path_contains in parts.path), None)
            if fault:
                fault.count -= 1
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
        self._send(req, 200, body, headers)

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
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        req.send_response(status)
        req.send_header("Content-Type", content_type)
        req.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            req.send_header(k, v)
        req.end_headers()
        req.wfile.write(data)


# --- building realistic payloads ---------------------------------------------------------
def make_group(group_id: int, full_path: str, parent_id: int | None = None) -> dict[str, Any]:
    name = full_path.rsplit("/", 1)[-1]
    return {"id": group_id, "name": name, "path": name, "full_path": full_path, "full_name": full_path.replace("/", " / "),
            "parent_id": parent_id, "visibility": "private", "web_url": f"https://gitlab.example.com/groups/{quote(full_path)}"}


def make_project(project_id: int, path: str, groups: list[dict[str, Any]], *, default_branch: str | None = "main",
                 archived: bool = False, pending_deletion: bool = False, shared_with: list[dict[str, Any]] = (),
                 topics: list[str] = ()) -> dict[str, Any]:
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
    return project
