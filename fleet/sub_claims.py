"""One project attribute the stack sets, `ci_id_token_sub_claim_components`, as a Pulumi dynamic resource.

Only that attribute, never the whole project: destroying a `gitlab.Project` resource deletes the project.
Create reads the value it finds (kept as the output `original`) and sets the stack's (kept as `applied`);
update sets; read reads it back (a refresh sees a change made by hand); delete gives `original` back when
the project still holds what the stack set. A project the token can no longer change (not Maintainer) or
that is gone is let go with a warning instead of failing the run: the refresh keeps what was recorded.

The GitLab token is read where the provider runs (GITLAB_TOKEN, else the stack secret gitlab:token that
Pulumi hands to `configure`), never taken as an input or given as an output: those are kept in the
stack's state, which every holder of its passphrase can read.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import gitlab
import gitlab.exceptions
import pulumi
import requests
from pulumi.dynamic import ConfigureRequest, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from .errors import FleetError

ATTRIBUTE = "ci_id_token_sub_claim_components"
TIMEOUT = 30.0  # seconds per request; python-gitlab retries 5xx and connection errors itself


class SubClaimError(FleetError):
    """GitLab did not read or set a project's sub claim components as asked."""


def _components(value: Any) -> list[str] | None:
    return list(value) if isinstance(value, list) and value and all(isinstance(c, str) for c in value) else None


class SubClaimProvider(ResourceProvider):
    """Reads and sets one project's `ci_id_token_sub_claim_components` with python-gitlab.

    Inputs: `projectId`, `apiUrl` (the instance base, without /api/v4) and `components`. Outputs: the same,
    and `original`, the value found before the first set.
    """

    serialize_as_secret_always = False  # it holds no secret: the token is read where it runs

    def __init__(self) -> None:
        super().__init__()
        self._secret: str | None = None  # the stack secret gitlab:token, from configure (never serialized)

    def __getstate__(self) -> dict[str, Any]:
        """What is serialized into the stack's state: never the token."""
        return {k: v for k, v in self.__dict__.items() if k != "_secret"}

    def configure(self, req: ConfigureRequest) -> None:
        secret = req.config.get("gitlab:token")
        self._secret = secret if isinstance(secret, str) and secret else None

    def _token(self) -> str:
        token = os.environ.get("GITLAB_TOKEN") or getattr(self, "_secret", None)
        if not token:
            raise SubClaimError("no GitLab token where the sub-claim provider runs: set GITLAB_TOKEN or the stack "
                                "secret gitlab:token (a token with the api scope, Maintainer on each project).")
        return token

    def _client(self, api_url: str) -> gitlab.Gitlab:
        return gitlab.Gitlab(api_url, private_token=self._token(), timeout=TIMEOUT, retry_transient_errors=True)

    def _call(self, what: str, project: int, api_url: str, method: str, data: dict[str, Any] | None = None) -> Any:
        client = self._client(api_url)
        path = f"/projects/{project}"
        try:
            if method == "get":
                return client.http_get(path)
            return client.http_put(path, post_data=data)
        except gitlab.exceptions.GitlabAuthenticationError as err:
            raise SubClaimError(f"GitLab at {api_url} rejected the token (401) when asked to {what} {ATTRIBUTE} of "
                                f"project {project}: set GITLAB_TOKEN to a valid token with the api scope.") from err
        except gitlab.exceptions.GitlabHttpError as err:
            hint = {401: "the token was rejected", 403: "the token needs the api scope and the Maintainer role",
                    404: "the project does not exist or the token cannot see it"}.get(err.response_code or 0, "")
            raise SubClaimError(f"GitLab at {api_url} refused to {what} {ATTRIBUTE} of project {project} "
                                f"(HTTP {err.response_code} {err.error_message}){'; ' + hint if hint else ''}.") from err
        except (gitlab.exceptions.GitlabError, requests.exceptions.RequestException) as err:
            raise SubClaimError(f"could not {what} {ATTRIBUTE} of project {project} at {api_url}: {err}.") from err

    def find(self, project: int, api_url: str) -> list[str] | None:
        """The project's components as GitLab shows them; None when it does not show them (the token's user is
        not Maintainer of the project, or GitLab is older than 17.10)."""
        data = self._call("read", project, api_url, "get")
        return _components(data.get(ATTRIBUTE) if isinstance(data, dict) else None)

    def get(self, project: int, api_url: str) -> list[str]:
        """The project's components as GitLab shows them."""
        found = self.find(project, api_url)
        if found is None:
            raise SubClaimError(f"GitLab at {api_url} does not show {ATTRIBUTE} of project {project}: it needs "
                                "GitLab 17.10 or later and a token whose user is Maintainer of the project.")
        return found

    def put(self, project: int, api_url: str, components: list[str]) -> None:
        """Set the project's components, and check that GitLab kept them."""
        data = self._call("set", project, api_url, "put", {ATTRIBUTE: components})
        kept = _components(data.get(ATTRIBUTE) if isinstance(data, dict) else None)
        if kept != components:
            raise SubClaimError(f"GitLab at {api_url} answered the change of {ATTRIBUTE} of project {project} to "
                                f"{components} with {kept}: the instance may be too old for these components.")

    def create(self, props: dict[str, Any]) -> CreateResult:
        project, api_url, wanted = int(props["projectId"]), str(props["apiUrl"]), list(props["components"])
        original = self.get(project, api_url)
        self.put(project, api_url, wanted)
        return CreateResult(str(project), {**props, "original": original, "applied": wanted})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in ("projectId", "apiUrl") if olds.get(key) != news.get(key)]
        changed = bool(replaces) or list(olds.get("components") or []) != list(news.get("components") or [])
        return DiffResult(changes=changed, replaces=replaces, delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        wanted = list(news["components"])
        self.put(int(news["projectId"]), str(news["apiUrl"]), wanted)
        return UpdateResult({**news, "original": olds.get("original"), "applied": wanted})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        project, api_url = int(props.get("projectId") or id_), str(props["apiUrl"])
        try:
            current = self.find(project, api_url)
        except SubClaimError as err:
            if _status(err) == 404:  # deleted, or no longer visible to the token: GitLab answers both alike
                _warn(f"project {project} was not found (deleted, or the token can no longer see it); kept what the "
                      f"stack recorded of its {ATTRIBUTE}.")
                return ReadResult(id_, props)
            if _status(err) != 403:
                raise
            current = None
        if current is None:  # it was shown when the stack set it: the token's user is no longer Maintainer
            _warn(f"cannot read {ATTRIBUTE} of project {project}: not Maintainer; kept what the stack recorded.")
            return ReadResult(id_, props)
        return ReadResult(id_, {**props, "components": current})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        project, api_url = int(props["projectId"]), str(props["apiUrl"])
        original = _components(props.get("original"))
        # what this resource set; `components` for one created before `applied` was recorded
        applied = _components(props.get("applied", props.get("components")))
        if original is None:
            return
        cannot = (f"cannot restore {ATTRIBUTE} on project {project}: not Maintainer; left as it is, not given back "
                  f"{_words(original)}.")
        try:
            current = self.find(project, api_url)
        except SubClaimError as err:
            if _status(err) == 404:  # deleted (its attribute with it), or out of the token's sight: say so either way
                _warn(f"project {project} was not found (deleted, or the token can no longer see it): its {ATTRIBUTE} "
                      f"was not given back {_words(original)}; if the project exists, restore it by hand.")
                return
            if _status(err) != 403:
                raise
            current = None
        if current is None:
            _warn(cannot)
            return
        if current != applied:  # changed since, by hand or by another stack: not ours to undo
            _warn(f"did not restore {ATTRIBUTE} of project {project} to {_words(original)}: it holds {_words(current)}, "
                  f"not what this stack set ({_words(applied)}); left as it is.")
            return
        try:
            self.put(project, api_url, original)
        except SubClaimError as err:
            if _status(err) != 403:
                raise
            _warn(cannot)


def _status(err: SubClaimError) -> int | None:
    """The HTTP status GitLab answered with, when that was the error."""
    cause = err.__cause__
    return cause.response_code if isinstance(cause, gitlab.exceptions.GitlabHttpError) else None


def _words(components: list[str] | None) -> str:
    return ", ".join(components) if components else "nothing"


def _warn(message: str) -> None:
    """A warning from where the provider runs: Pulumi shows a dynamic provider's output with the resource."""
    print(f"warning: {message}", file=sys.stderr)


class SubClaimComponents(pulumi.dynamic.Resource, module="fleet", name="SubClaimComponents"):
    """A project's `ci_id_token_sub_claim_components`, set by the stack and given back when it goes."""

    original: pulumi.Output[list[str]]
    components: pulumi.Output[list[str]]

    def __init__(self, name: str, *, project_id: int, api_url: str, components: list[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(SubClaimProvider(), name, {"projectId": project_id, "apiUrl": api_url,
                                                    "components": components, "original": None}, opts)
