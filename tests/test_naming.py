"""Role names: helper-compatible, at most 64 characters, unique ignoring case, stable."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.naming import assign_role_names, helper_role_name, path_slug

IAM_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")

segment = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,40}", fullmatch=True)
paths = st.lists(segment, min_size=2, max_size=5).map("/".join)


def test_slug_matches_gitlab_ci_project_path_slug():
    assert path_slug("shop/Checkout") == "shop-checkout"
    assert path_slug("shop/api_gateway") == "shop-api-gateway"
    assert path_slug("-group/_x_") == "group--x"  # runs of '-' kept, ends stripped
    assert path_slug("a" * 70) == "a" * 63
    assert path_slug("g/" + "b" * 60 + "-c") == "g-" + "b" * 60  # cut to 63 first, then the '-' stripped


def test_helper_name_is_gitlab_dash_first_57_slug_characters():
    path = "shop/platform/tools/an-extraordinarily-long-project-name-for-the-terraform-state"
    assert helper_role_name(path) == "gitlab-" + path_slug(path)[:57]
    assert helper_role_name(path) == "gitlab-shop-platform-tools-an-extraordinarily-long-project-name-"
    assert len(helper_role_name(path)) == 64


def test_collisions_lowest_id_keeps_plain_name_others_get_id_suffix():
    names = assign_role_names([(7, "shop/api-gateway"), (3, "shop/api_gateway"), (5, "shop/web-ui"), (9, "shop/web/ui")])
    assert names == {3: "gitlab-shop-api-gateway", 7: "gitlab-shop-api-gateway_7",
                     5: "gitlab-shop-web-ui", 9: "gitlab-shop-web-ui_9"}


def test_long_collision_suffix_stays_within_64():
    long = "shop/" + "x" * 80
    names = assign_role_names([(1, long + "a"), (123456789, long + "b")])
    assert names[1] == helper_role_name(long + "a")
    assert names[123456789].endswith("_123456789") and len(names[123456789]) == 64


def test_case_only_difference_collides_like_iam():
    names = assign_role_names([(2, "Shop/Cart"), (1, "shop/cart")])
    assert names == {1: "gitlab-shop-cart", 2: "gitlab-shop-cart_2"}


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(1, 10**9), paths, min_size=1, max_size=40))
def test_names_valid_unique_and_helper_compatible_where_possible(projects):
    names = assign_role_names(projects.items())
    assert set(names) == set(projects)
    assert len({n.casefold() for n in names.values()}) == len(names)
    for pid, name in names.items():
        assert IAM_ROLE_NAME.match(name), name
    # the lowest id of each helper name keeps it
    for pid, path in projects.items():
        plain = helper_role_name(path)
        holders = [i for i, p in projects.items() if helper_role_name(p).casefold() == plain.casefold()]
        assert (names[pid] == plain) == (pid == min(holders))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(1, 10**6), paths, min_size=1, max_size=20),
       st.dictionaries(st.integers(10**6 + 1, 10**7), paths, max_size=20))
def test_names_stay_the_same_when_projects_are_added(existing, added):
    before = assign_role_names(existing.items())
    after = assign_role_names([*existing.items(), *added.items()])
    assert {pid: after[pid] for pid in existing} == before


@given(st.lists(st.tuples(st.integers(1, 1000), paths), max_size=15, unique_by=lambda t: t[0]), st.randoms())
def test_names_do_not_depend_on_listing_order(projects, rnd):
    shuffled = list(projects)
    rnd.shuffle(shuffled)
    assert assign_role_names(projects) == assign_role_names(shuffled)


# --- names already deployed win: a project's name changes only when its own path does ------------

def test_deployed_names_stay_with_their_projects():
    # 3 took the plain name first (e.g. 1 was transferred in later with a lower id): it keeps it
    names = assign_role_names([(1, "shop/a_b"), (3, "shop/a-b")], deployed={3: "gitlab-shop-a-b"})
    assert names == {1: "gitlab-shop-a-b_1", 3: "gitlab-shop-a-b"}


def test_a_gone_keepers_name_renames_nobody_and_is_not_reused_in_the_same_run():
    deployed = {1: "gitlab-shop-a-b", 2: "gitlab-shop-a-b_2"}
    # 1 is deleted; 2 keeps its suffixed name, and a new 5 with the same plain name does not take 1's
    # name while 1's role still exists (it is deleted only after new roles are created)
    names = assign_role_names([(2, "shop/a-b"), (5, "shop/A-B")], deployed=deployed)
    assert names == {2: "gitlab-shop-a-b_2", 5: "gitlab-shop-a-b_5"}


def test_a_renamed_project_gets_a_name_of_its_new_path():
    names = assign_role_names([(1, "shop/new-name")], deployed={1: "gitlab-shop-old-name"})
    assert names == {1: "gitlab-shop-new-name"}


def test_inconsistent_deployed_names_are_refused():
    import pytest
    with pytest.raises(ValueError, match="recorded for projects 1 and 2"):
        assign_role_names([(1, "shop/a")], deployed={1: "gitlab-shop-a", 2: "GITLAB-shop-a"})


small_paths = st.lists(st.sampled_from(["a", "A", "a-b", "a_b", "a.b", "b", "x" * 60 + "1", "x" * 60 + "2"]),
                       min_size=2, max_size=3).map(lambda segs: "g/" + "/".join(segs))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(1, 60), small_paths, min_size=1, max_size=12),
       st.data())
def test_no_bystander_is_renamed_when_another_project_changes(listed, data):
    """Any change to another project (added, removed, archived/excluded, renamed) keeps every other project's name.

    `planned` is the part of the listing that gets roles (archived and excluded projects are listed, not planned);
    the next run starts from the names the previous run deployed.
    """
    planned = data.draw(st.sets(st.sampled_from(sorted(listed))), label="planned")
    before = assign_role_names(listed.items())
    deployed = {pid: before[pid] for pid in planned}
    changed = data.draw(st.sampled_from(sorted(listed)), label="changed")
    action = data.draw(st.sampled_from(["remove", "unplan", "plan", "rename", "add-lower", "add-higher"]), label="action")
    after_listed, after_planned = dict(listed), set(planned)
    if action == "remove":
        del after_listed[changed]
        after_planned.discard(changed)
    elif action == "unplan":
        after_planned.discard(changed)
    elif action == "plan":
        after_planned.add(changed)
    elif action == "rename":
        after_listed[changed] = data.draw(small_paths, label="new path")
    else:
        new_id = (min(listed) - 1) if action == "add-lower" else max(listed) + 1
        if new_id < 1:
            return
        after_listed[new_id] = data.draw(small_paths, label="new project's path")
        after_planned.add(new_id)
    after = assign_role_names(after_listed.items(), deployed)
    for pid in planned & after_planned:
        if pid != changed:
            assert after[pid] == before[pid], (pid, action, changed)
    # every name valid and unique, and none taken from a role still deployed to another project
    assert len({n.casefold() for n in after.values()}) == len(after)
    holders = {name.casefold(): pid for pid, name in deployed.items()}
    assert all(holders.get(name.casefold(), pid) == pid for pid, name in after.items())
    assert all(IAM_ROLE_NAME.match(n) for n in after.values())
