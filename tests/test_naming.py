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
