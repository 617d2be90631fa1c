"""The preview note and the drift issue, written through python-gitlab to the GitLab double."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from fleet.gitlab_notes import (
    NOTE_LIMIT,
    CiEnvironmentError,
    GitLabWriteError,
    IssueTarget,
    NoteTarget,
    NoteTooLongError,
    issue_target,
    marker,
    note_target,
    sync_issue,
    upsert_note,
)
from tests.gitlab_double import BOT_USER, Fault, GitLabDouble, make_issue, make_note, make_user

TOKEN = "glpat-notes-bot"
PROJECT, MR = 7, 12
ALICE = make_user(41, "alice")
BOB = make_user(42, "bob")
DEV = marker("preview", "dev")
DRIFT_DEV = marker("drift", "dev")


def env(double: GitLabDouble, **overrides: str | None) -> dict[str, str]:
    values: dict[str, str | None] = {"CI_API_V4_URL": f"{double.url}/api/v4", "CI_PROJECT_ID": str(PROJECT),
                                     "CI_MERGE_REQUEST_IID": str(MR), "FLEET_NOTE_TOKEN": TOKEN,
                                     "CI_JOB_TOKEN": "job-token-cannot-post", **overrides}
    return {k: v for k, v in values.items() if v is not None}


def notes_double(*notes: dict, **kw) -> GitLabDouble:
    return GitLabDouble(merge_requests={PROJECT: {MR}}, mr_notes={(PROJECT, MR): list(notes)}, **kw)


def notes_of(double: GitLabDouble) -> list[dict]:
    return double.mr_notes[(PROJECT, MR)]


def writes(double: GitLabDouble) -> list[tuple[str, str]]:
    return [(c.method, c.path) for c in double.calls if c.method != "GET"]


# --- the environment ---------------------------------------------------------------------------
def test_note_target_reads_the_ci_variables():
    target = note_target({"CI_API_V4_URL": "https://gitlab.example.com/gitlab/api/v4", "CI_PROJECT_ID": "7",
                          "CI_MERGE_REQUEST_IID": "12", "FLEET_NOTE_TOKEN": "glpat-secret"})
    assert target == NoteTarget("https://gitlab.example.com/gitlab", 7, 12, "glpat-secret")
    assert "glpat-secret" not in repr(target)


def test_a_missing_token_says_the_job_token_cannot_post_and_what_to_create():
    with pytest.raises(CiEnvironmentError) as err:
        note_target({"CI_API_V4_URL": "https://gitlab.example.com/api/v4", "CI_PROJECT_ID": "7",
                     "CI_MERGE_REQUEST_IID": "12", "CI_JOB_TOKEN": "job-token"})
    message = str(err.value)
    assert message.startswith("FLEET_NOTE_TOKEN is not set: CI_JOB_TOKEN cannot post notes")
    assert "project access token with the api scope and the Reporter role" in message
    assert "masked CI/CD variable FLEET_NOTE_TOKEN" in message
    assert err.value.exit_code == 78


def test_outside_a_merge_request_pipeline_the_mr_iid_is_named():
    with pytest.raises(CiEnvironmentError, match=r"^CI_MERGE_REQUEST_IID is not set: --mr-note works only in a merge "
                                                 r"request pipeline"):
        note_target({"CI_API_V4_URL": "https://gitlab.example.com/api/v4", "CI_PROJECT_ID": "7",
                     "FLEET_NOTE_TOKEN": "glpat-x"})


def test_every_missing_variable_is_named_at_once():
    with pytest.raises(CiEnvironmentError) as err:
        note_target({})
    assert [p.split(" ", 1)[0] for p in err.value.problems] == [
        "CI_API_V4_URL", "CI_PROJECT_ID", "CI_MERGE_REQUEST_IID", "FLEET_NOTE_TOKEN"]
    assert all(f"  - {p}" in str(err.value) for p in err.value.problems)


@pytest.mark.parametrize(("name", "value", "words"), [
    ("CI_PROJECT_ID", "shop/fleet", "is 'shop/fleet', not a positive number"),
    ("CI_PROJECT_ID", "0", "is '0', not a positive number"),
    ("CI_API_V4_URL", "https://gitlab.example.com", "not an http(s) URL ending in /api/v4"),
    ("FLEET_NOTE_TOKEN", "glpat-x\n", "contains spaces, line breaks or non-ASCII characters"),
])
def test_invalid_values_are_refused_with_the_variable_named(name, value, words):
    values = {"CI_API_V4_URL": "https://gitlab.example.com/api/v4", "CI_PROJECT_ID": "7", "FLEET_NOTE_TOKEN": "glpat-x"}
    with pytest.raises(CiEnvironmentError) as err:
        issue_target({**values, name: value})
    assert str(err.value).startswith(f"{name} ") and words in str(err.value)
    assert "glpat-x\n" not in str(err.value)


def test_issue_target_needs_no_merge_request():
    target = issue_target({"CI_API_V4_URL": "http://127.0.0.1:8/api/v4/", "CI_PROJECT_ID": "7", "FLEET_NOTE_TOKEN": "t"})
    assert target == IssueTarget("http://127.0.0.1:8", 7, "t")


# --- the merge request note --------------------------------------------------------------------
def test_marker_is_a_hidden_html_comment_per_kind_and_stack():
    assert DEV == "<!-- gitlab-aws-oidc-fleet:preview stack=dev -->"
    assert marker("drift", "dev") != DEV != marker("preview", "dev2")
    with pytest.raises(ValueError):
        marker("preview", "dev -->")


def test_the_note_is_created_then_updated_in_place_and_other_notes_are_left_alone():
    alices_copy = make_note(601, f"{DEV}\nquoted by hand", ALICE)
    others = [make_note(600, "LGTM", BOB), alices_copy, make_note(602, "system: added 1 commit", BOT_USER, system=True),
              make_note(603, f"{marker('preview', 'prod')}\nprod plan", BOT_USER)]
    with notes_double(*others) as double:
        before = copy.deepcopy(others)
        target = note_target(env(double))
        assert upsert_note(target, "dev", "## Plan for dev\n1 to add") == "created"
        assert upsert_note(target, "dev", "## Plan for dev\n2 to add") == "updated"
        assert upsert_note(target, "dev", "## Plan for dev\n2 to add\n") == "unchanged"

        ours = [n for n in notes_of(double) if n["author"]["id"] == BOT_USER["id"] and n["body"].startswith(DEV)]
        assert len(ours) == 1
        assert ours[0]["body"] == f"{DEV}\n## Plan for dev\n2 to add"
        assert notes_of(double)[:4] == before  # Bob's, Alice's copy of the marker, the system note, prod's note
        assert writes(double) == [("POST", f"/api/v4/projects/{PROJECT}/merge_requests/{MR}/notes"),
                                  ("PUT", f"/api/v4/projects/{PROJECT}/merge_requests/{MR}/notes/{ours[0]['id']}")]


def test_the_note_is_found_among_many_pages_of_notes():
    chatter = [make_note(1000 + i, f"comment {i}", ALICE if i % 2 else BOB) for i in range(260)]
    chatter.insert(230, make_note(5000, f"{DEV}\nold plan", BOT_USER))
    with notes_double(*chatter) as double:
        assert upsert_note(note_target(env(double)), "dev", "new plan") == "updated"
        listed = [c.query for c in double.calls if c.method == "GET" and c.path.endswith("/notes")]
        assert [q.get("page", "1") for q in listed] == ["1", "2", "3"]
        assert all(q["per_page"] == "100" for q in listed)
        assert len(notes_of(double)) == 261
        assert next(n for n in notes_of(double) if n["id"] == 5000)["body"] == f"{DEV}\nnew plan"


def test_the_oldest_of_two_own_notes_is_updated():
    with notes_double(make_note(700, f"{DEV}\nfirst", BOT_USER), make_note(701, f"{DEV}\nsecond", BOT_USER)) as double:
        assert upsert_note(note_target(env(double)), "dev", "third") == "updated"
        assert [n["body"] for n in notes_of(double)] == [f"{DEV}\nthird", f"{DEV}\nsecond"]


def test_a_body_that_cannot_fit_is_refused_before_any_request():
    with notes_double() as double:
        target = note_target(env(double))
        room = NOTE_LIMIT - len(DEV) - 1
        with pytest.raises(NoteTooLongError, match=r"over GitLab's limit of 1,000,000 characters for a note; nothing "
                                                   r"was written"):
            upsert_note(target, "dev", "x" * (room + 1))
        assert double.calls == []
        assert upsert_note(target, "dev", "x" * room) == "created"  # exactly at the limit: GitLab takes it
        assert len(notes_of(double)[0]["body"]) == NOTE_LIMIT


def test_the_double_answers_an_overlong_note_as_gitlab_does():
    with notes_double(note_limit=50) as double:
        with pytest.raises(GitLabWriteError, match=r"refused creating the preview note of stack dev on merge request "
                                                   r"!12 of project 7 \(HTTP 400: 400 Bad request - Note "
                                                   r"\{:note=>\[\"is too long \(maximum is 50 characters\)\"\]\}\)"):
            upsert_note(note_target(env(double)), "dev", "y" * 60)


def test_an_invalid_token_is_reported_without_showing_it():
    with notes_double(tokens={"glpat-other"}) as double:
        with pytest.raises(GitLabWriteError) as err:
            upsert_note(note_target(env(double)), "dev", "plan")
    message = str(err.value)
    assert "rejected FLEET_NOTE_TOKEN while reading the token's user (GET /user) (401 Unauthorized)" in message
    assert "invalid, expired or revoked" in message and err.value.status == 401
    assert TOKEN not in message


def test_a_token_without_rights_is_told_which_scope_and_role_it_needs():
    with notes_double(forbidden_tokens={TOKEN}) as double:
        with pytest.raises(GitLabWriteError, match=r"refused listing the notes of merge request !12 of project 7 \(403 "
                                                   r"Forbidden\): FLEET_NOTE_TOKEN needs the api scope \(not only "
                                                   r"read_api\) and at least the Reporter role"):
            upsert_note(note_target(env(double)), "dev", "plan")


def test_an_unknown_merge_request_names_the_variables_to_check():
    with notes_double() as double:
        with pytest.raises(GitLabWriteError, match=r"404 while listing the notes of merge request !13 of project 7: "
                                                   r".*check CI_PROJECT_ID and CI_MERGE_REQUEST_IID"):
            upsert_note(note_target(env(double, CI_MERGE_REQUEST_IID="13")), "dev", "plan")


def test_reads_are_retried_after_a_server_error_but_a_create_is_not():
    with notes_double(faults=[Fault(1, status=502, path_contains="/notes", method="GET")]) as double:
        assert upsert_note(note_target(env(double)), "dev", "plan") == "created"
        assert len(notes_of(double)) == 1
    with notes_double(faults=[Fault(1, status=502, path_contains="/notes", method="POST")]) as double:
        with pytest.raises(GitLabWriteError, match=r"refused creating the preview note .*HTTP 502"):
            upsert_note(note_target(env(double)), "dev", "plan")
        assert writes(double) == [("POST", f"/api/v4/projects/{PROJECT}/merge_requests/{MR}/notes")]


def test_gitlab_under_a_relative_url():
    with notes_double(prefix="/gitlab") as double:
        target = note_target(env(double, CI_API_V4_URL=f"{double.url}/gitlab/api/v4"))
        assert upsert_note(target, "dev", "plan") == "created"


# --- the drift issue ---------------------------------------------------------------------------
DAY = dt.date(2026, 3, 1)


def issues_double() -> GitLabDouble:
    others = [
        make_issue(PROJECT, 1, "Flaky pipeline", "nothing to do with drift", ALICE),
        make_issue(PROJECT, 2, "Copied marker", f"{DRIFT_DEV}\ncopied by hand", ALICE),
        make_issue(PROJECT, 3, "Drift in stack prod", f"{marker('drift', 'prod')}\nprod drift", BOT_USER,
                   labels=["fleet-drift"]),
    ]
    return GitLabDouble(issues={PROJECT: others})


def issue(double: GitLabDouble, iid: int) -> dict:
    return next(i for i in double.issues[PROJECT] if i["iid"] == iid)


def test_the_drift_issue_is_opened_updated_closed_and_then_left_alone():
    with issues_double() as double:
        before = copy.deepcopy(double.issues[PROJECT])
        target = issue_target(env(double))
        assert sync_issue(target, "dev", "1 role differs", today=DAY) == "opened"
        [new] = [i for i in double.issues[PROJECT] if i["iid"] not in (1, 2, 3)]
        assert new["title"] == "Drift in stack dev" and new["labels"] == ["fleet-drift"]
        assert new["description"] == f"{DRIFT_DEV}\n1 role differs" and new["state"] == "opened"

        new["title"], new["labels"] = "Look at this: dev drifted", []  # a user retitles and unlabels it
        assert sync_issue(target, "dev", "2 roles differ", today=DAY) == "updated"
        assert sync_issue(target, "dev", "2 roles differ", today=DAY) == "unchanged"
        assert new["description"] == f"{DRIFT_DEV}\n2 roles differ" and new["title"] == "Look at this: dev drifted"

        assert sync_issue(target, "dev", None, today=DAY) == "closed"
        assert new["state"] == "closed"
        assert [n["body"] for n in double.issue_notes[(PROJECT, new["iid"])]] == [
            "No drift on 2026-03-01: closing this issue."]

        double.calls.clear()
        assert sync_issue(target, "dev", None, today=DAY) == "none"
        assert writes(double) == []
        assert double.issues[PROJECT][:3] == before  # other people's issues and other stacks' issues untouched


def test_drift_after_a_closed_issue_reopens_it():
    with issues_double() as double:
        target = issue_target(env(double))
        sync_issue(target, "dev", "drift one", today=DAY)
        sync_issue(target, "dev", None, today=DAY)
        assert sync_issue(target, "dev", "drift two", today=DAY) == "reopened"
        ours = [i for i in double.issues[PROJECT] if i["iid"] > 3]
        assert len(ours) == 1 and ours[0]["state"] == "opened"
        assert ours[0]["description"] == f"{DRIFT_DEV}\ndrift two"
        assert issue(double, 2)["state"] == "opened" and issue(double, 3)["state"] == "opened"


def test_of_several_closed_issues_the_last_updated_is_reopened():
    with issues_double() as double:
        older = make_issue(PROJECT, 8, "Drift in stack dev", f"{DRIFT_DEV}\nold", BOT_USER, state="closed")
        newer = make_issue(PROJECT, 9, "Drift in stack dev", f"{DRIFT_DEV}\nnewer", BOT_USER, state="closed")
        double.issues[PROJECT] += [newer, older]
        older["updated_at"], newer["updated_at"] = "2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z"
        assert sync_issue(issue_target(env(double)), "dev", "again", today=DAY) == "reopened"
        assert (newer["state"], older["state"]) == ("opened", "closed")


def test_issues_are_looked_up_by_their_author_only():
    with issues_double() as double:
        sync_issue(issue_target(env(double)), "dev", "drift", today=DAY)
        [listing] = [c.query for c in double.calls if c.method == "GET" and c.path.endswith("/issues")]
        assert listing["author_id"] == str(BOT_USER["id"]) and listing["state"] == "all"


def test_an_overlong_drift_report_is_refused_before_any_request():
    with issues_double() as double:
        with pytest.raises(NoteTooLongError):
            sync_issue(issue_target(env(double)), "dev", "z" * NOTE_LIMIT, today=DAY)
        assert double.calls == []


def test_a_forbidden_issue_write_names_scope_and_role():
    with issues_double() as double:
        double.forbidden_tokens = {TOKEN}
        with pytest.raises(GitLabWriteError, match=r"refused listing the drift issues of project 7 \(403 Forbidden\)"):
            sync_issue(issue_target(env(double)), "dev", "drift", today=DAY)


def test_an_unreachable_gitlab_is_named_after_the_retries():
    double = notes_double().start()
    values = env(double)
    double.stop()
    with pytest.raises(GitLabWriteError, match=r"Could not reach GitLab at http://127\.0\.0\.1:\d+ while reading the "
                                               r"token's user \(GET /user\), 3 retries spent \(ConnectionError\)"):
        upsert_note(note_target(values), "dev", "plan")


# --- the double's CI/CD variables endpoints (used by other tests through python-gitlab) ------------
def test_the_double_serves_project_variables_like_gitlab():
    import gitlab

    from tests.gitlab_double import make_variable

    variables = [make_variable("ROLE_ARN", "arn:a", "prod"), make_variable("ROLE_ARN", "arn:b", "dev"),
                 *(make_variable(f"K{i}", "v") for i in range(130))]
    with GitLabDouble(variables={PROJECT: variables}) as double:
        project = gitlab.Gitlab(double.url, private_token=TOKEN).projects.get(PROJECT, lazy=True)
        assert len(project.variables.list(get_all=True)) == 132
        assert project.variables.get("ROLE_ARN", filter={"environment_scope": "dev"}).value == "arn:b"
        with pytest.raises(gitlab.GitlabGetError) as several:
            project.variables.get("ROLE_ARN")
        assert several.value.response_code == 409 and "filter[environment_scope]" in several.value.error_message
        with pytest.raises(gitlab.GitlabGetError) as absent:
            project.variables.get("ROLE_ARN", filter={"environment_scope": "staging"})
        assert (absent.value.response_code, absent.value.error_message) == (404, "404 Variable Not Found")
        with pytest.raises(gitlab.GitlabGetError) as no_project:
            gitlab.Gitlab(double.url, private_token=TOKEN).projects.get(99, lazy=True).variables.get("K1")
        assert no_project.value.error_message == "404 Project Not Found"


def test_a_fork_merge_requests_note_goes_to_the_merge_requests_project():
    env = {"CI_API_V4_URL": "https://gitlab.example.com/api/v4", "CI_PROJECT_ID": "7", "CI_MERGE_REQUEST_PROJECT_ID": "8",
           "CI_MERGE_REQUEST_IID": "3", "FLEET_NOTE_TOKEN": "glpat-x"}
    assert note_target(env).project_id == 8
    assert note_target({k: v for k, v in env.items() if k != "CI_MERGE_REQUEST_PROJECT_ID"}).project_id == 7
