"""The preview note on a merge request and the drift issue of a stack, written through GitLab's REST API.

Each stack owns at most one note per merge request and one drift issue in the fleet project, found
again by a hidden marker line (an HTML comment GitLab keeps in the text and does not render) and by
their author: only notes and issues written by the token's own user are ever edited, so a copied
marker in someone else's comment or issue is left alone. Titles and labels are not used to find
them, so users may retitle or relabel the issue.

Drift issue life cycle (`sync_issue`):
- drift, an open issue: its description is replaced by the new report ("updated"/"unchanged");
- drift, none open but a closed one: the most recently updated one is reopened with the new report
  ("reopened"), so a stack keeps one issue whose timeline shows every drift episode;
- drift, none at all: a new issue is opened, labelled `fleet-drift` ("opened");
- clean, an open one: a comment "No drift on <date>" is added and it is closed ("closed");
- clean, none open: nothing is done ("none").

CI_JOB_TOKEN cannot write notes or issues, so the token is FLEET_NOTE_TOKEN: a project access token
with the `api` scope and at least the Reporter role (Reporter may comment on merge requests of a
private project and create, edit, close and reopen issues). The token never appears in a message.
Creating requests (POST) are not retried after a server error or a timeout, since the first may have
been carried out; reads and updates are.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import gitlab
import gitlab.exceptions
import requests

from .errors import FleetError

NOTE_LIMIT = 1_000_000  # characters GitLab accepts in a note body (and, at least, in an issue description)
TOKEN_VARIABLE = "FLEET_NOTE_TOKEN"
DRIFT_LABEL = "fleet-drift"
TIMEOUT = 30.0  # seconds for one attempt
MAX_RETRIES = 3  # after a 429, a 5xx or a timeout (python-gitlab waits 0.1 s, 0.2 s, 0.4 s, or as the server asks)
PER_PAGE = 100

NoteResult = Literal["created", "updated", "unchanged"]
IssueResult = Literal["opened", "updated", "unchanged", "closed", "reopened", "none"]

_STACK = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)
_ID = re.compile(r"[1-9][0-9]{0,18}", re.ASCII)
_API_URL = re.compile(r"(https?://[^\s/?#]+(?:/[^\s?#]*)?)/api/v4/?", re.ASCII)
_TOKEN = re.compile(r"[\x21-\x7e]+", re.ASCII)  # printable ASCII without spaces


class NotesError(FleetError):
    """The merge request note or the drift issue could not be written."""


class CiEnvironmentError(NotesError):
    """A CI/CD variable the note or issue needs is missing or invalid."""

    exit_code = 78  # EX_CONFIG (sysexits.h): fixed in the pipeline's settings

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(problems[0] if len(problems) == 1 else "\n".join(["CI/CD variables to fix:",
                                                                             *(f"  - {p}" for p in problems)]))


class NoteTooLongError(NotesError):
    """The text with its marker is over GitLab's limit; refused before any request."""


class GitLabWriteError(NotesError):
    """GitLab refused or did not answer a request; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class NoteTarget:
    """Where the preview note goes: the merge request `mr_iid` of project `project_id`."""

    api_url: str  # the instance's base URL (CI_API_V4_URL without /api/v4)
    project_id: int
    mr_iid: int
    token: str = field(repr=False)


@dataclass(frozen=True)
class IssueTarget:
    """Where drift issues go: the fleet's own project."""

    api_url: str
    project_id: int
    token: str = field(repr=False)


def marker(kind: str, stack: str) -> str:
    """The hidden line that identifies a stack's note or issue, e.g. `<!-- gitlab-aws-oidc-fleet:preview stack=dev -->`."""
    if kind not in ("preview", "drift"):
        raise ValueError(f"unknown marker kind {kind!r}")
    if not _STACK.fullmatch(stack):
        raise ValueError(f"invalid stack name {stack!r}")
    return f"<!-- gitlab-aws-oidc-fleet:{kind} stack={stack} -->"


def has_marker(text: str | None, mark: str) -> bool:
    """Whether `text` has `mark` as one of its lines (surrounding spaces ignored)."""
    return any(line.strip() == mark for line in (text or "").splitlines())


def with_marker(mark: str, body: str) -> str:
    """The text written to GitLab: the marker line, then the body; refused when over NOTE_LIMIT."""
    text = f"{mark}\n{body.rstrip()}"
    if len(text) > NOTE_LIMIT:
        raise NoteTooLongError(f"the report is {len(body):,} characters and, with its marker, over GitLab's limit of "
                               f"{NOTE_LIMIT:,} characters for a note; nothing was written. Shorten the report "
                               "(its renderer cuts it to fit).")
    return text


# --- the CI environment ------------------------------------------------------------------------
_TOKEN_HELP = ("CI_JOB_TOKEN cannot post notes or issues; create a project access token with the api scope and the "
               f"Reporter role (Settings > Access tokens) and store it as a masked CI/CD variable {TOKEN_VARIABLE}")


def _api_url(env: Mapping[str, str], problems: list[str]) -> str:
    value = env.get("CI_API_V4_URL", "")
    match = _API_URL.fullmatch(value)
    if not value:
        problems.append("CI_API_V4_URL is not set: run in a GitLab CI/CD job, or set it to the instance's API URL "
                        "(e.g. https://gitlab.example.com/api/v4).")
    elif match is None:
        problems.append(f"CI_API_V4_URL is {value!r}, not an http(s) URL ending in /api/v4: set it to the instance's "
                        "API URL (e.g. https://gitlab.example.com/api/v4).")
    return match.group(1) if match else ""


def _number(env: Mapping[str, str], name: str, missing: str, problems: list[str]) -> int:
    value = env.get(name, "")
    if not value:
        problems.append(f"{name} is not set: {missing}")
        return 0
    if not _ID.fullmatch(value):
        problems.append(f"{name} is {value[:40]!r}, not a positive number: {missing}")
        return 0
    return int(value)


def _token(env: Mapping[str, str], problems: list[str]) -> str:
    value = env.get(TOKEN_VARIABLE, "")
    if not value:
        problems.append(f"{TOKEN_VARIABLE} is not set: {_TOKEN_HELP}.")
    elif not _TOKEN.fullmatch(value):
        problems.append(f"{TOKEN_VARIABLE} contains spaces, line breaks or non-ASCII characters: set it to the token "
                        "alone.")
    return value


_PROJECT_HELP = "run in a GitLab CI/CD job of the fleet project, or set it to that project's numeric id."


def note_target(env: Mapping[str, str]) -> NoteTarget:
    """The merge request and token for `--mr-note`, from the job's environment; every problem is named at once."""
    problems: list[str] = []
    api_url = _api_url(env, problems)
    # The merge request's own project: for a pipeline run in the parent project of a fork's merge request,
    # CI_PROJECT_ID is where the pipeline runs and CI_MERGE_REQUEST_PROJECT_ID where the merge request is.
    project_id = _number(env, "CI_MERGE_REQUEST_PROJECT_ID" if env.get("CI_MERGE_REQUEST_PROJECT_ID") else "CI_PROJECT_ID",
                         _PROJECT_HELP, problems)
    mr_iid = _number(env, "CI_MERGE_REQUEST_IID", "--mr-note works only in a merge request pipeline "
                     "(a job with `rules: - if: $CI_PIPELINE_SOURCE == \"merge_request_event\"`).", problems)
    token = _token(env, problems)
    if problems:
        raise CiEnvironmentError(problems)
    return NoteTarget(api_url, project_id, mr_iid, token)


def issue_target(env: Mapping[str, str]) -> IssueTarget:
    """The fleet project and token for `drift --issue`, from the job's environment."""
    problems: list[str] = []
    api_url = _api_url(env, problems)
    project_id = _number(env, "CI_PROJECT_ID", _PROJECT_HELP, problems)
    token = _token(env, problems)
    if problems:
        raise CiEnvironmentError(problems)
    return IssueTarget(api_url, project_id, token)


# --- requests and their failures ---------------------------------------------------------------
T = TypeVar("T")


def _client(api_url: str, token: str) -> gitlab.Gitlab:
    return gitlab.Gitlab(api_url, private_token=token, timeout=TIMEOUT, retry_transient_errors=True,
                         per_page=PER_PAGE)


def _explain(err: Exception, api_url: str, what: str, not_found: str) -> GitLabWriteError:
    """One sentence for a failed request: what was being done, why it failed, what to do."""
    if isinstance(err, gitlab.exceptions.GitlabAuthenticationError):
        return GitLabWriteError(
            f"GitLab at {api_url} rejected {TOKEN_VARIABLE} while {what} (401 Unauthorized): the token is invalid, "
            f"expired or revoked; create a new project access token (api scope, Reporter role) and update the "
            f"CI/CD variable {TOKEN_VARIABLE}.", status=401)
    if isinstance(err, gitlab.exceptions.GitlabError) and err.response_code is not None:
        status = err.response_code
        if status == 403:
            return GitLabWriteError(
                f"GitLab at {api_url} refused {what} (403 Forbidden): {TOKEN_VARIABLE} needs the api scope (not only "
                "read_api) and at least the Reporter role in the project.", status=403)
        if status == 404:
            return GitLabWriteError(f"GitLab at {api_url} answered 404 while {what}: {not_found}", status=404)
        return GitLabWriteError(f"GitLab at {api_url} refused {what} (HTTP {status}: {err.error_message}).",
                                status=status)
    if isinstance(err, requests.exceptions.RequestException):
        return GitLabWriteError(f"Could not reach GitLab at {api_url} while {what}, {MAX_RETRIES} retries spent "
                                f"({type(err).__name__}); check CI_API_V4_URL and the network.")
    return GitLabWriteError(f"GitLab at {api_url} did not answer as expected while {what} ({err}).")


def _call(api_url: str, what: str, not_found: str, request: Callable[[], T]) -> T:
    try:
        return request()
    except (gitlab.exceptions.GitlabError, requests.exceptions.RequestException) as err:
        raise _explain(err, api_url, what, not_found) from err


def _current_user_id(gl: gitlab.Gitlab, api_url: str) -> int:
    """The id of the token's user (GET /user): the author whose notes and issues this module may edit."""
    data = _call(api_url, "reading the token's user (GET /user)", "is CI_API_V4_URL the GitLab API?",
                 lambda: gl.http_get("/user", max_retries=MAX_RETRIES))
    user_id = data.get("id") if isinstance(data, dict) else None
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise GitLabWriteError(f"GitLab at {api_url} answered GET /user without a user id; check CI_API_V4_URL.")
    return user_id


def _author_id(item: Any) -> int | None:
    author = getattr(item, "author", None)
    return author.get("id") if isinstance(author, dict) else None


def _mine(items: Iterable[Any], me: int, mark: str, text_attr: str) -> list[Any]:
    """The items written by user `me` that carry `mark`, in the order given."""
    return [i for i in items if _author_id(i) == me and has_marker(getattr(i, text_attr, None), mark)]


def _same(old: str | None, new: str) -> bool:
    return (old or "").rstrip() == new.rstrip()


# --- the merge request note --------------------------------------------------------------------
def upsert_note(target: NoteTarget, stack: str, body: str) -> NoteResult:
    """Create or update the stack's preview note on the merge request; every other note is left alone.

    The note is the oldest one by the token's user with the stack's marker line; notes with the marker
    by anyone else are never edited. "unchanged" when the note already says exactly this.
    """
    mark = marker("preview", stack)
    text = with_marker(mark, body)
    api, mr_ref = target.api_url, f"merge request !{target.mr_iid} of project {target.project_id}"
    not_found = (f"project {target.project_id} or its merge request !{target.mr_iid} does not exist or the token's "
                 "user cannot see it: check CI_PROJECT_ID and CI_MERGE_REQUEST_IID, and that the token belongs to "
                 "that project.")
    gl = _client(api, target.token)
    me = _current_user_id(gl, api)
    mr = gl.projects.get(target.project_id, lazy=True).mergerequests.get(target.mr_iid, lazy=True)
    notes = _call(api, f"listing the notes of {mr_ref}", not_found,
                  lambda: list(mr.notes.list(get_all=True, order_by="created_at", sort="asc",
                                             max_retries=MAX_RETRIES)))
    ours = _mine(notes, me, mark, "body")
    if not ours:
        _call(api, f"creating the preview note of stack {stack} on {mr_ref}", not_found,
              lambda: mr.notes.create({"body": text}, retry_transient_errors=False, max_retries=MAX_RETRIES))
        return "created"
    note = ours[0]
    if _same(note.body, text):
        return "unchanged"
    _call(api, f"updating note {note.id} (stack {stack}) on {mr_ref}", not_found,
          lambda: mr.notes.update(note.id, {"body": text}, max_retries=MAX_RETRIES))
    return "updated"


# --- the drift issue ---------------------------------------------------------------------------
def issue_title(stack: str) -> str:
    """The title a new drift issue gets (users may change it; it is not used to find the issue)."""
    return f"Drift in stack {stack}"


def clean_comment(today: _dt.date) -> str:
    return f"No drift on {today.isoformat()}: closing this issue."


def _close(api: str, project: Any, iid: int, comment: str, ref: str, not_found: str) -> None:
    """Comment on the issue, then close it."""
    _call(api, f"commenting on {ref}", not_found,
          lambda: project.issues.get(iid, lazy=True).notes.create({"body": comment}, retry_transient_errors=False,
                                                                  max_retries=MAX_RETRIES))
    _call(api, f"closing {ref}", not_found,
          lambda: project.issues.update(iid, {"state_event": "close"}, max_retries=MAX_RETRIES))


def sync_issue(target: IssueTarget, stack: str, body: str | None, *, today: _dt.date | None = None) -> IssueResult:
    """Open, update, reopen or close the stack's drift issue (`body` None: no drift). See the module docstring.

    Only issues by the token's user with the stack's marker line are touched; with several open, the
    oldest is updated on drift and all are closed when clean.
    """
    mark = marker("drift", stack)
    text = None if body is None else with_marker(mark, body)
    api, where = target.api_url, f"project {target.project_id}"
    not_found = (f"project {target.project_id} does not exist or the token's user cannot see it: check CI_PROJECT_ID "
                 "and that the token belongs to that project.")
    gl = _client(api, target.token)
    me = _current_user_id(gl, api)
    project = gl.projects.get(target.project_id, lazy=True)
    state = "opened" if text is None else "all"  # closed issues matter only when there is drift to report
    issues = _call(api, f"listing the drift issues of {where}", not_found,
                   lambda: list(project.issues.list(get_all=True, author_id=me, state=state, order_by="created_at",
                                                    sort="asc", max_retries=MAX_RETRIES)))
    ours = _mine(issues, me, mark, "description")
    opened = [i for i in ours if i.state == "opened"]
    if text is None:
        date = today or _dt.datetime.now(_dt.UTC).date()
        for issue in opened:
            _close(api, project, issue.iid, clean_comment(date), f"drift issue #{issue.iid} of {where}", not_found)
        return "closed" if opened else "none"
    if opened:
        issue = opened[0]
        if _same(issue.description, text):
            return "unchanged"
        _call(api, f"updating drift issue #{issue.iid} of {where}", not_found,
              lambda: project.issues.update(issue.iid, {"description": text}, max_retries=MAX_RETRIES))
        return "updated"
    closed = sorted((i for i in ours if i.state == "closed"), key=lambda i: (i.updated_at, i.iid))
    if closed:
        issue = closed[-1]
        _call(api, f"reopening drift issue #{issue.iid} of {where}", not_found,
              lambda: project.issues.update(issue.iid, {"description": text, "state_event": "reopen"},
                                            max_retries=MAX_RETRIES))
        return "reopened"
    _call(api, f"opening the drift issue of stack {stack} in {where}", not_found,
          lambda: project.issues.create({"title": issue_title(stack), "description": text, "labels": DRIFT_LABEL},
                                        retry_transient_errors=False, max_retries=MAX_RETRIES))
    return "opened"
