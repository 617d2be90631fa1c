"""The blast-radius guard's arithmetic: what `up` may delete or replace, and what it refuses."""

from __future__ import annotations

import pytest

from fleet.guard import ENV, GuardError, RoleStep, allowed, check, check_names, program_limit


def steps(same: int = 0, delete: int = 0, replace: int = 0, create: int = 0) -> list[RoleStep]:
    made = [RoleStep(f"gitlab-same-{i}", f"g/same-{i}", "same") for i in range(same)]
    made += [RoleStep(f"gitlab-gone-{i}", f"g/gone-{i}", "delete") for i in range(delete)]
    made += [RoleStep(f"gitlab-moved-{i}", f"g/moved-{i}", "replace") for i in range(replace)]
    return made + [RoleStep(f"gitlab-new-{i}", f"g/new-{i}", "create") for i in range(create)]


@pytest.mark.parametrize(("max_deletes", "roles", "expected"), [
    (5, 1000, 5),  # the configured number when 10% is more
    (5, 30, 3),  # 10% of 30
    (5, 59, 5), (5, 49, 4),  # 10% rounds down: never more than 10%
    (5, 9, 0),  # a small stack deletes no role unattended
    (0, 1000, 0),
])
def test_the_configured_limit_and_ten_percent_whichever_is_smaller(max_deletes, roles, expected):
    assert allowed(max_deletes, roles, explicit=False) == expected


def test_an_explicit_max_deletes_replaces_both_limits():
    assert allowed(7, 9, explicit=True) == 7


def test_deletes_and_replaces_count_creates_and_updates_do_not():
    check(steps(same=100, delete=3, replace=2, create=50), stack="dev", max_deletes=5, explicit=False)
    with pytest.raises(GuardError) as err:
        check(steps(same=100, delete=3, replace=3, create=50), stack="dev", max_deletes=5, explicit=False)
    message = str(err.value)
    assert "would delete or replace 6 roles" in message
    assert "fleet:guard.maxDeletes 5 and 10% of the stack's 106 roles allow 5" in message
    # every doomed role is listed, sorted by project, and the way forward is named
    assert message.index("delete gitlab-gone-0 (g/gone-0)") < message.index("replace gitlab-moved-2 (g/moved-2)")
    assert "Nothing was changed" in message and "--max-deletes 6" in message


def test_ten_percent_binds_below_fifty_roles():
    with pytest.raises(GuardError, match="10% of the stack's 20 roles allow 2"):
        check(steps(same=17, delete=3), stack="dev", max_deletes=5, explicit=False)


def test_an_empty_listing_never_deletes_a_whole_stack_even_when_allowed():
    with pytest.raises(GuardError, match="would delete every one .*found no project to keep.*pulumi destroy"):
        check(steps(delete=3), stack="dev", max_deletes=100, explicit=True)
    check([], stack="new", max_deletes=0, explicit=False)  # a new stack with nothing yet is fine
    check(steps(create=4), stack="new", max_deletes=0, explicit=False)


def test_the_programs_check_reads_held_and_planned_names():
    held = {1: "gitlab-a", 2: "gitlab-b", 3: "gitlab-c"}
    check_names(held, {1: "gitlab-a", 2: "GITLAB-B", 4: "gitlab-d"}, stack="dev", max_deletes=1, explicit=True)
    with pytest.raises(GuardError, match=r"2 roles.*replace gitlab-b \(2\); delete gitlab-c \(3\)"):
        check_names(held, {1: "gitlab-a", 2: "gitlab-b2"}, stack="dev", max_deletes=1, explicit=True)


def test_the_allowance_the_command_line_passes_is_a_whole_number():
    assert program_limit({}) is None
    assert program_limit({ENV: "3"}) == 3
    with pytest.raises(GuardError, match="not a whole number"):
        program_limit({ENV: "3 "})


def test_deleting_or_replacing_the_oidc_provider_counts_as_replacing_every_role():
    with pytest.raises(GuardError, match="would replace the account's GitLab OIDC provider, which every role of the stack "
                                         r"trusts \(20 roles"):
        check(steps(same=20), stack="dev", max_deletes=5, explicit=False, provider_op="replace")
    with pytest.raises(GuardError, match="would delete the account's GitLab OIDC provider"):
        check(steps(same=20), stack="dev", max_deletes=19, explicit=True, provider_op="delete")
    check(steps(same=20), stack="dev", max_deletes=20, explicit=True, provider_op="delete")  # said on purpose
    check(steps(same=20), stack="dev", max_deletes=5, explicit=False, provider_op="update")  # an audience added
