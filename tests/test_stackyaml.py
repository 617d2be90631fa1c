"""Stack files read as `pulumi up` reads them: ambiguous plain scalars under fleet:* refused, values as Pulumi
hands them to the program."""

from __future__ import annotations

import json
import textwrap

import pytest

from fleet.errors import FleetError
from fleet.stackyaml import Secret, read_stack_config

SRC = "Pulumi.test.yaml"


def stack(body: str) -> str:
    """A stack file whose `config:` map holds `body` (written without indentation)."""
    return "config:\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ") + "\n"


def problems(text: str) -> list[str]:
    """The problem lines of the FleetError that reading `text` raises."""
    with pytest.raises(FleetError) as info:
        read_stack_config(text, SRC)
    first, *rest = str(info.value).splitlines()
    assert first.startswith(f"{SRC}: ")
    assert rest, str(info.value)
    assert all(line.startswith(f"  - {SRC}: ") for line in rest), rest
    return rest


def one_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# --- refused plain scalars ---------------------------------------------------------------------------------

BOOL_FIX = "write true or false, or quote it"
NUMBER_FIX = "or write a plain decimal number"


@pytest.mark.parametrize(
    ("written", "reading", "fix"),
    [
        # YAML 1.1 booleans that Pulumi reads as strings
        ("yes", 'is true to YAML 1.1 but the string "yes" to Pulumi', BOOL_FIX),
        ("No", 'is false to YAML 1.1 but the string "No" to Pulumi', BOOL_FIX),
        ("on", 'is true to YAML 1.1 but the string "on" to Pulumi', BOOL_FIX),
        ("OFF", 'is false to YAML 1.1 but the string "OFF" to Pulumi', BOOL_FIX),
        ("y", 'is true to YAML 1.1 but the string "y" to Pulumi', BOOL_FIX),
        ("n", 'is false to YAML 1.1 but the string "n" to Pulumi', BOOL_FIX),
        # leading zeros (octal in YAML 1.1)
        ("0777", "is the integer 511 to both YAML 1.1 and Pulumi", 'quote it (e.g. "0777") ' + NUMBER_FIX),
        ("012345678901", 'is the string "012345678901" to YAML 1.1 but the float 12345678901.0 to Pulumi',
         'quote it (e.g. "012345678901") ' + NUMBER_FIX),
        ("08", 'is the string "08" to YAML 1.1 but the float 8.0 to Pulumi', 'quote it (e.g. "08") ' + NUMBER_FIX),
        # sexagesimal, underscores, prefixes
        ("12:30", 'is the integer 750 to YAML 1.1 but the string "12:30" to Pulumi', 'quote it (e.g. "12:30")'),
        ("1:30.5", 'is the float 90.5 to YAML 1.1 but the string "1:30.5" to Pulumi', 'quote it (e.g. "1:30.5")'),
        ("1_000", "is the integer 1000 to both YAML 1.1 and Pulumi", 'quote it (e.g. "1_000") ' + NUMBER_FIX),
        ("0b101", "is the integer 5 to both YAML 1.1 and Pulumi", 'quote it (e.g. "0b101") ' + NUMBER_FIX),
        ("0x1F", "is the integer 31 to both YAML 1.1 and Pulumi", 'quote it (e.g. "0x1F") ' + NUMBER_FIX),
        ("0X1F", 'is the string "0X1F" to YAML 1.1 but the integer 31 to Pulumi', 'quote it (e.g. "0X1F")'),
        ("0o17", 'is the string "0o17" to YAML 1.1 but the integer 15 to Pulumi', 'quote it (e.g. "0o17")'),
        # floats YAML 1.1 does not see (its float pattern needs a dot and a signed exponent)
        ("1e3", 'is the string "1e3" to YAML 1.1 but the float 1000.0 to Pulumi',
         'quote it (e.g. "1e3") ' + NUMBER_FIX),
        ("1.5e3", 'is the string "1.5e3" to YAML 1.1 but the float 1500.0 to Pulumi', 'quote it (e.g. "1.5e3")'),
        ("+.5", 'is the string "+.5" to YAML 1.1 but the float 0.5 to Pulumi', 'quote it (e.g. "+.5")'),
        (".5", "is the float 0.5 to both YAML 1.1 and Pulumi", 'quote it (e.g. ".5") ' + NUMBER_FIX),
        ("1.", "is the float 1.0 to both YAML 1.1 and Pulumi", 'quote it (e.g. "1.") ' + NUMBER_FIX),
        # integers past 64 bits: exact to YAML 1.1, a rounded float to Pulumi
        ("99999999999999999999", "is the integer 99999999999999999999 to YAML 1.1 but the float 1e+20 to Pulumi",
         'quote it (e.g. "99999999999999999999")'),
        # infinities and NaN
        (".inf", "is infinity to both YAML 1.1 and Pulumi, which JSON cannot carry", 'quote it (e.g. ".inf")'),
        ("-.Inf", "is minus infinity to both YAML 1.1 and Pulumi", 'quote it (e.g. "-.Inf")'),
        (".NaN", "is NaN to both YAML 1.1 and Pulumi", 'quote it (e.g. ".NaN")'),
        # dates and timestamps
        ("2024-01-01", "is a date to YAML 1.1 but a timestamp to Pulumi", 'quote it (e.g. "2024-01-01")'),
        ("2024-01-01T10:00:00Z", "is a timestamp to both YAML 1.1 and Pulumi",
         'quote it (e.g. "2024-01-01T10:00:00Z")'),
        ("2024-01-01 10:00:00 +1", 'is a timestamp to YAML 1.1 but the string "2024-01-01 10:00:00 +1" to Pulumi',
         "quote it"),
        # strings to both readers that still look numeric
        ("1.2.3", "looks like a number but is a string to both YAML 1.1 and Pulumi", 'quote it (e.g. "1.2.3")'),
        ("1e400", "looks like a number but is a string to both YAML 1.1 and Pulumi", 'quote it (e.g. "1e400")'),
    ],
)
def test_ambiguous_plain_scalar_is_refused_with_path_line_and_fix(written: str, reading: str, fix: str) -> None:
    text = stack(f"""
        aws:region: eu-west-1
        fleet:gitlab:
          url: https://gitlab.example.com
          group: {written}
    """)
    message = one_problem(text)
    assert message.startswith(f"  - {SRC}: fleet:gitlab.group: line 5: `{written}` ")
    assert reading in message
    assert fix in message


def test_top_level_value_is_checked_too() -> None:
    message = one_problem(stack("fleet:accountId: 0123456789012"))
    assert message.startswith(f"  - {SRC}: fleet:accountId: line 2: `0123456789012` is ")
    assert 'quote it (e.g. "0123456789012")' in message


def test_all_problems_are_reported_together_in_document_order() -> None:
    text = stack("""
        fleet:accountId: 012345678901
        fleet:gitlab:
          includeShared: yes
          exclude: [a, 1e3]
        fleet:trust:
          refs: ["branch:main", off]
        fleet:role: {path: /, maxSessionDuration: 0x1F}
    """)
    found = problems(text)
    assert [line.split(": ")[1:3] for line in found] == [
        ["fleet:accountId", "line 2"],
        ["fleet:gitlab.includeShared", "line 4"],
        ["fleet:gitlab.exclude[1]", "line 5"],
        ["fleet:trust.refs[1]", "line 7"],
        ["fleet:role.maxSessionDuration", "line 8"],
    ]
    assert "`yes` is true to YAML 1.1" in found[1]
    assert "`off` is false to YAML 1.1" in found[3]


def test_paths_name_nested_lists_and_maps() -> None:
    text = stack("""
        fleet:deep:
          rows:
            - [ok, 0777]
            - {flag: on, list: [1, 2, {x: 2024-01-01}]}
    """)
    found = problems(text)
    assert [line.split(": ")[1:3] for line in found] == [
        ["fleet:deep.rows[0][1]", "line 4"],
        ["fleet:deep.rows[1].flag", "line 5"],
        ["fleet:deep.rows[1].list[2].x", "line 5"],
    ]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("yes", '`yes` is true to YAML 1.1 but the string "yes" to Pulumi; write true or false, or quote it'),
        ("0777", 'quote it (e.g. "0777") or write a plain decimal number'),
        ("1", 'the key `1` is the integer 1; keys under fleet:* must be strings, so quote it (e.g. "1")'),
        ("true", "the key `true` is true; keys under fleet:* must be strings"),
        ("~", "the key `~` is null; keys under fleet:* must be strings"),
    ],
)
def test_map_keys_under_fleet_are_checked(key: str, expected: str) -> None:
    message = one_problem(stack(f"""
        fleet:gitlab:
          {key}: value
    """))
    assert message.startswith(f"  - {SRC}: fleet:gitlab.{key}: line 3: ")
    assert expected in message


def test_explicit_tags_under_fleet_are_refused_but_str_is_accepted() -> None:
    message = one_problem(stack("""
        fleet:gitlab: {url: !!int 5, group: !!str 0777}
    """))
    assert message.startswith(f"  - {SRC}: fleet:gitlab.url: line 2: the tag `!!int` on `5` is not allowed")
    assert "remove it" in message
    config = read_stack_config(stack("fleet:gitlab: {group: !!str 0777}"), SRC)
    assert json.loads(str(config["fleet:gitlab"])) == {"group": "0777"}


# --- accepted values and what they become ------------------------------------------------------------------

def test_quoted_forms_of_ambiguous_values_are_strings() -> None:
    text = stack("""
        fleet:accountId: "012345678901"
        fleet:single: '0777'
        fleet:gitlab:
          a: "yes"
          b: 'on'
          c: "1e3"
          d: "2024-01-01"
          e: "12:30"
          f: '0x1F'
          g: "~"
          h: |
            1_000
          i: >-
            .inf
        fleet:trust:
          refs: ["no", 'y', "1.2.3"]
    """)
    config = read_stack_config(text, SRC)
    assert config["fleet:accountId"] == "012345678901"
    assert config["fleet:single"] == "0777"
    assert json.loads(str(config["fleet:gitlab"])) == {
        "a": "yes", "b": "on", "c": "1e3", "d": "2024-01-01", "e": "12:30", "f": "0x1F", "g": "~",
        "h": "1_000\n", "i": ".inf",
    }
    assert json.loads(str(config["fleet:trust"])) == {"refs": ["no", "y", "1.2.3"]}


def test_accepted_plain_values_become_pulumi_strings() -> None:
    text = stack("""
        aws:region: eu-west-1
        fleet:accountId: 111111111111
        fleet:flag: true
        fleet:count: 3600
        fleet:ratio: 0.5
        fleet:empty:
        fleet:gitlab:
          url: https://gitlab.example.com
          group: acme
          includeShared: true
          includeArchived: False
          includeSubgroups: TRUE
          maxRetries: 4
          timeout: 2.5
          apiUrl: ~
          exclude: []
    """)
    config = read_stack_config(text, SRC)
    assert config["aws:region"] == "eu-west-1"
    assert config["fleet:accountId"] == "111111111111"
    assert config["fleet:flag"] == "true"
    assert config["fleet:count"] == "3600"
    assert config["fleet:ratio"] == "0.5"
    assert config["fleet:empty"] == ""
    gitlab = json.loads(str(config["fleet:gitlab"]))
    assert gitlab == {
        "url": "https://gitlab.example.com", "group": "acme", "includeShared": True, "includeArchived": False,
        "includeSubgroups": True, "maxRetries": 4, "timeout": 2.5, "apiUrl": None, "exclude": [],
    }
    assert gitlab["includeShared"] is True
    assert list(config) == ["aws:region", "fleet:accountId", "fleet:flag", "fleet:count", "fleet:ratio",
                            "fleet:empty", "fleet:gitlab"]


def test_maps_become_go_json_text() -> None:
    # encoding/json: compact, keys sorted, a whole float without a fraction, HTML characters escaped.
    config = read_stack_config(stack('fleet:role: {path: "/<a&b>/", maxSessionDuration: 3600.0, z: -0.25, a: +7}'), SRC)
    assert config["fleet:role"] == '{"a":7,"maxSessionDuration":3600,"path":"/\\u003ca\\u0026b\\u003e/","z":-0.25}'
    assert json.loads(str(config["fleet:role"]))["maxSessionDuration"] == 3600  # an int, as the program sees it


def test_top_level_scalars_are_handed_over_as_written() -> None:
    # yaml.v3 decodes a scalar into Pulumi's string config value as its text, not as the value it resolves to.
    config = read_stack_config(stack("fleet:a: True\nfleet:b: +5\nfleet:c: 1.50\nfleet:d: null"), SRC)
    assert config == {"fleet:a": "True", "fleet:b": "+5", "fleet:c": "1.50", "fleet:d": ""}


def test_lists_become_json_text() -> None:
    config = read_stack_config(stack('fleet:refs: ["branch:main", "tag:v*", 5, false]'), SRC)
    assert config["fleet:refs"] == '["branch:main","tag:v*",5,false]'


# --- secrets -----------------------------------------------------------------------------------------------

def test_secure_values_become_secrets() -> None:
    config = read_stack_config(stack("""
        gitlab:token:
          secure: AAABAHVzZXI=
        fleet:hidden: {secure: v1:abc}
        aws:notSecret: {secure: AAAB, other: 1}
    """), SRC)
    assert config["gitlab:token"] == Secret("AAABAHVzZXI=")
    assert config["fleet:hidden"] == Secret("v1:abc")
    assert json.loads(str(config["aws:notSecret"])) == {"secure": "AAAB", "other": 1}


def test_secret_inside_a_fleet_value_is_refused() -> None:
    message = one_problem(stack("fleet:gitlab: {url: {secure: AAAB}}"))
    assert message.startswith(f"  - {SRC}: fleet:gitlab.url: line 2: a secret inside a fleet:* value")


# --- other namespaces --------------------------------------------------------------------------------------

def test_other_namespaces_are_not_refused_and_read_as_pulumi_does() -> None:
    config = read_stack_config(stack("""
        aws:region: yes
        aws:profile: 0777
        custom:map: {a: yes, b: 0777, c: 1e3, d: 1.0, e: 2024-01-01, f: 12:30}
    """), SRC)
    assert config["aws:region"] == "yes"
    assert config["aws:profile"] == "0777"
    assert json.loads(str(config["custom:map"])) == {
        "a": "yes", "b": 511, "c": 1000, "d": 1, "e": "2024-01-01T00:00:00Z", "f": "12:30",
    }


def test_other_namespaces_keep_merge_keys_with_explicit_keys_winning() -> None:
    config = read_stack_config(stack("""
        aws:base: &base {a: 1, b: 2}
        aws:merged:
          <<: [*base, {c: 3, a: 9}]
          b: 20
    """), SRC)
    assert json.loads(str(config["aws:merged"])) == {"a": 1, "b": 20, "c": 3}


# --- aliases and merge keys under fleet:* -----------------------------------------------------------------

def test_aliases_under_fleet_are_followed() -> None:
    config = read_stack_config(stack("""
        aws:shared: &shared {url: https://gitlab.example.com, includeShared: true}
        fleet:gitlab: *shared
        fleet:list: [*shared, *shared]
    """), SRC)
    assert json.loads(str(config["fleet:gitlab"])) == {"url": "https://gitlab.example.com", "includeShared": True}
    assert json.loads(str(config["fleet:list"])) == [json.loads(str(config["fleet:gitlab"]))] * 2


def test_alias_to_an_ambiguous_value_is_refused_where_fleet_uses_it() -> None:
    message = one_problem(stack("""
        aws:flag: &flag yes
        fleet:gitlab: {includeShared: *flag}
    """))
    assert message.startswith(f"  - {SRC}: fleet:gitlab.includeShared: line 2: `yes` is true to YAML 1.1")


def test_recursive_alias_is_refused_without_looping() -> None:
    message = one_problem(stack("fleet:loop: &loop {self: *loop}"))
    assert message.startswith(f"  - {SRC}: fleet:loop.self: line 2: an alias refers to a value that contains it")


def test_merge_key_under_fleet_is_refused() -> None:
    message = one_problem(stack("""
        aws:base: &base {url: https://gitlab.example.com}
        fleet:gitlab:
          <<: *base
          group: acme
    """))
    assert message.startswith(f"  - {SRC}: fleet:gitlab.<<: line 4: merge keys (`<<`) are not allowed")
    assert "write the keys out" in message


# --- duplicates, invalid files -----------------------------------------------------------------------------

def test_duplicate_config_keys_are_refused() -> None:
    message = one_problem(stack("""
        fleet:accountId: "111111111111"
        aws:region: eu-west-1
        'fleet:accountId': "222222222222"
    """))
    assert message == (f"  - {SRC}: fleet:accountId: line 4: duplicate key `fleet:accountId` (first at line 2); "
                       "Pulumi refuses duplicate keys, so keep one")


def test_duplicate_keys_inside_fleet_values_are_refused() -> None:
    found = problems(stack("""
        fleet:gitlab:
          group: acme
          includeShared: false
          group: other
        fleet:trust: {refs: [a], "refs": [b]}
    """))
    assert [line.split(": ")[1:3] for line in found] == [["fleet:gitlab.group", "line 5"],
                                                        ["fleet:trust.refs", "line 6"]]
    assert "duplicate key `group` (first at line 3)" in found[0]


@pytest.mark.parametrize("text", ["config: [a\n", "config:\n  a: b\n c: d\n", "config: {a: 1}\n---\nconfig: {}\n",
                                  "config: *nowhere\n", "config:\n  a: \x00\n"])
def test_invalid_yaml_is_refused(text: str) -> None:
    with pytest.raises(FleetError, match=rf"^{SRC} is not valid YAML: "):
        read_stack_config(text, SRC)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- config\n", "just text\n", "secretsprovider: x\n",
                                  "config:\n", "config: [a, b]\n", "config: text\n"])
def test_missing_config_map_is_refused(text: str) -> None:
    with pytest.raises(FleetError) as info:
        read_stack_config(text, SRC)
    assert str(info.value) == f"{SRC}: expected a top-level 'config:' map"


def test_bundled_stack_files_are_accepted() -> None:
    from pathlib import Path

    stacks = sorted((Path(__file__).resolve().parent.parent / "stacks").glob("Pulumi.*.yaml"))
    assert stacks
    for path in stacks:
        config = read_stack_config(path.read_text(encoding="utf-8"), path.name)
        assert isinstance(config["fleet:accountId"], str)  # 12 digits, or a placeholder "<...>" in the examples
        assert isinstance(json.loads(str(config["fleet:gitlab"]))["includeSubgroups"], bool)


def test_a_merge_key_directly_under_config_is_refused() -> None:
    """Merged in by a YAML reader that honours `<<`, it would bring fleet:* keys past every check."""
    text = ('config:\n  notes:scope: &prod {fleet:trust: {refs: ["branch:*"]}}\n  <<: *prod\n'
            '  fleet:accountId: "111111111111"\n')
    with pytest.raises(FleetError, match=r"config: line 3: .*merge key \(<<\) directly under config:"):
        read_stack_config(text, SRC)
