"""Discovery: list a GitLab group's projects with python-gitlab, completely or not at all.

python-gitlab retries 5xx, 429 (honouring Retry-After) and timeouts with exponential backoff.
A listing that still fails, or that changed while it was read, stops the run: a missing project
would mean a deleted role.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import gitlab
import gitlab.exceptions
import requests

from .config import GitLabConfig
from .errors import DiscoveryError
from .inventory import Inventory, parse_inventory

PER_PAGE = 100
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 10  # python-gitlab's default: waits 0.1 s doubling per retry, unless Retry-After says otherwise
RETRY_BUDGET_S = int(sum(0.1 * 2**n for n in range(DEFAULT_RETRIES)))

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def gitlab_token(secret: str | None = None) -> str | None:
    """The token from GITLAB_TOKEN, else the stack's `gitlab:token` secret when the caller has it."""
    return os.environ.get("GITLAB_TOKEN") or secret


def connect(api_url: str, token: str | None, *, timeout: float = DEFAULT_TIMEOUT) -> gitlab.Gitlab:
    return gitlab.Gitlab(api_url, private_token=token or None, timeout=timeout,
                         retry_transient_errors=True, per_page=PER_PAGE)


def _explain(err: Exception, api_url: str, group: str) -> DiscoveryError:
    """One clear sentence for each way listing a group fails."""
    code = getattr(err, "response_code", None)
    if isinstance(err, gitlab.exceptions.GitlabAuthenticationError) or code == 401:
        return DiscoveryError(f"GitLab at {api_url} rejected the token (401 Unauthorized): set GITLAB_TOKEN to a valid token with the read_api scope.")
    if code == 403:
        return DiscoveryError(f"The token may not list projects of GitLab group '{group}' (403 Forbidden): it needs the read_api scope and at least Reporter access to the group.")
    if code == 404:
        return DiscoveryError(f"GitLab group '{group}' was not found at {api_url} (404): check fleet:gitlab.group, or give the token access to the group.")
    if code == 429:
        return DiscoveryError(f"GitLab at {api_url} kept rate-limiting the listing of '{group}' (429) after {DEFAULT_RETRIES} retries; nothing was planned, try again later.")
    if code is not None:
        return DiscoveryError(f"GitLab at {api_url} failed while listing '{group}' (HTTP {code}) after {DEFAULT_RETRIES} retries; nothing was planned.")
    return DiscoveryError(f"Could not reach GitLab at {api_url} while listing '{group}' ({type(err).__name__}: {err}); nothing was planned.")


def _group_object(gl: gitlab.Gitlab, config: GitLabConfig, progress: Progress | None) -> dict[str, Any]:
    """The group's id and canonical full path (GET /groups/:id), read after its projects were listed.

    Should that endpoint alone answer 404, a group configured by path is still known by that path.
    """
    try:
        attrs = gl.groups.get(config.group).asdict()
    except gitlab.exceptions.GitlabGetError as err:
        if err.response_code != 404 or config.group.isdigit():
            raise
        if progress:
            progress(f"GET /groups/{config.group} answered 404 although its projects were listed; "
                     f"identifying the group by its configured path '{config.group}'")
        return {"id": None, "full_path": config.group}
    return {k: attrs.get(k) for k in ("id", "full_path", "name", "web_url")}


def fetch_inventory(config: GitLabConfig, token: str | None, *, timeout: float = DEFAULT_TIMEOUT,
                    progress: Progress | None = _stderr) -> Inventory:
    """The group and every project GitLab lists for it, before the fleet's own filtering."""
    gl = connect(config.api_url, token, timeout=timeout)
    name = config.group
    if progress:
        progress(f"listing projects of GitLab group '{name}' at {config.api_url} "
                 f"(transient failures are retried up to {DEFAULT_RETRIES} times with backoff, for about {RETRY_BUDGET_S} s)")
    try:
        listing = gl.groups.get(name, lazy=True).projects.list(
            iterator=True, include_subgroups=config.include_subgroups, with_shared=config.include_shared,
            order_by="id", sort="asc", per_page=PER_PAGE,
        )
        projects: dict[int, dict[str, Any]] = {}
        totals: set[int | None] = set()  # X-Total of every page: offset pages shift if the group changes
        for index, project in enumerate(listing, start=1):
            totals.add(listing.total)
            attrs = project.asdict()  # as GitLab sent it, without python-gitlab's parent group_id
            projects.setdefault(attrs["id"], attrs)
            if progress and index % PER_PAGE == 0:
                total = listing.total
                progress(f"discovered {index}{'' if total is None else f' of {total}'} projects of {name}")
        group = _group_object(gl, config, progress)
    except (gitlab.exceptions.GitlabError, requests.RequestException) as err:
        raise _explain(err, config.api_url, name) from err
    totals.add(listing.total)
    if len(totals) > 1 or (listing.total is not None and listing.total != len(projects)):
        raise DiscoveryError(
            f"The project listing of '{name}' changed while it was read (GitLab reported "
            f"{' then '.join(str(t) for t in sorted(totals, key=str))} projects, {len(projects)} were received); "
            f"nothing was planned, run again.")
    if progress:
        progress(f"discovered {len(projects)} projects of {group['full_path']}")
    return parse_inventory({"group": group, "projects": list(projects.values())})
