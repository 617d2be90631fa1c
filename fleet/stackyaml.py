"""Stack files read the way `pulumi up` reads them.

PyYAML reads YAML 1.1; Pulumi reads stack files with Go's gopkg.in/yaml.v3 and hands each config value to the
program as a string: a top-level scalar as the text written (null as ""), a map or list as JSON made by Go's
encoding/json, `{secure: ...}` as a secret. The two readers disagree on many plain (unquoted) scalars, so under
`fleet:*` keys every plain scalar whose reading could differ is refused with a message that says how to write it;
everything else is returned as Pulumi hands it to the program.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Union

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import StackFileError
from .spelling import did_you_mean, spell

FLEET_PREFIX = "fleet:"
STACK_FILE_KEYS = ("config", "secretsprovider", "encryptedkey", "encryptionsalt")  # what a stack file may hold
MAX_VALUES = 100_000  # values one config may expand to through aliases (yaml.v3 refuses excessive aliasing)

_TAG = "tag:yaml.org,2002:"
_STR, _BOOL, _INT, _FLOAT = _TAG + "str", _TAG + "bool", _TAG + "int", _TAG + "float"
_NULL, _TIMESTAMP, _MERGE = _TAG + "null", _TAG + "timestamp", _TAG + "merge"
_MAP, _SEQ = _TAG + "map", _TAG + "seq"

Json = Union[bool, int, float, str, list["Json"], dict[str, "Json"], None]  # noqa: UP007 (a recursive alias needs Union)
Scalar = tuple[str, bool | int | float | str | None]  # (kind, value) as yaml.v3 resolves a scalar


@dataclass(frozen=True)
class Secret:
    """A `{secure: ...}` config value: ciphertext that only Pulumi can decrypt."""

    ciphertext: str


def read_stack_config(text: str, source: str) -> dict[str, str | Secret]:
    """The `config:` map of a stack file, each value as Pulumi hands it to a program (a string; maps and
    lists as JSON text), after refusing plain scalars under `fleet:*` keys that YAML 1.1 and Pulumi's YAML read
    differently."""
    try:
        loader = _Loader(text)  # checks the characters of the text already
        root = loader.get_single_node()
    except yaml.YAMLError as err:
        raise StackFileError(f"{source} is not valid YAML: {err}") from err
    try:
        return _Reader(source, loader).stack_config(root)
    finally:
        loader.dispose()


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that also keeps each scalar's tag as written (None when it has none)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.written_tags: dict[int, str | None] = {}

    def compose_scalar_node(self, anchor: Any) -> ScalarNode:
        """Compose as PyYAML does, remembering the tag of the event (the node only has the resolved one)."""
        parser: Any = self  # PyYAML's parser methods are untyped
        tag = parser.peek_event().tag
        node = super().compose_scalar_node(anchor)
        self.written_tags[id(node)] = tag
        return node


class _Reader:
    """One pass over the composed document: collects problems, converts values the way Pulumi does."""

    def __init__(self, source: str, loader: _Loader) -> None:
        self.source = source
        self.loader = loader
        self.problems: list[str] = []
        self.budget = MAX_VALUES

    def report(self, where: str, node: Node, message: str) -> None:
        """Note one problem; all are raised together at the end."""
        self.problems.append(f"  - {self.source}: {where}: line {node.start_mark.line + 1}: {message}")

    def stack_config(self, root: Node | None) -> dict[str, str | Secret]:
        """The converted `config:` map of the document `root`, or a FleetError listing every problem."""
        config = None
        if isinstance(root, MappingNode):
            for key_node, value_node in self.pairs(root, ""):
                if key_node.value == "config":
                    config = value_node
                elif key_node.value == "environment":
                    raise StackFileError(f"{self.source}: it imports Pulumi ESC environments (environment:), whose values "
                                      "`pulumi up` reads and this tool cannot; write the fleet:* values in the file, "
                                     "or check the stack with `pulumi preview`")
                elif key_node.value not in STACK_FILE_KEYS:
                    near = did_you_mean(str(key_node.value), list(STACK_FILE_KEYS))
                    hint = f"did you mean {near}?" if near else f"a stack file has {', '.join(STACK_FILE_KEYS)}"
                    raise StackFileError(f"{self.source}: unknown top-level key {spell(key_node.value)}; {hint}")
        if not isinstance(config, MappingNode):
            raise StackFileError(f"{self.source}: expected a top-level 'config:' map")
        out: dict[str, str | Secret] = {}
        for key_node, value_node in self.pairs(config, ""):
            key = key_node.value
            if key_node.tag == _MERGE:
                self.report("config", key_node, "a merge key (<<) directly under config: can bring in any key, "
                                                "fleet:* ones included, unchecked; write those keys out")
                continue
            strict = key.startswith(FLEET_PREFIX)
            if strict:
                self.check_plain(key_node, key)
            value = self.top_level(value_node, key, strict)
            if value is not None:
                out[key] = value
        if self.problems:
            raise StackFileError(f"{self.source}: these config values would be read differently by `pulumi up`, "
                             "or refused by it:\n" + "\n".join(self.problems))
        return out

    def pairs(self, node: MappingNode, where: str) -> list[tuple[ScalarNode, Node]]:
        """The (key, value) pairs of a map with scalar keys; reports other keys and duplicates (yaml.v3 refuses
        both, PyYAML would keep the last duplicate)."""
        seen: dict[str, ScalarNode] = {}
        out: list[tuple[ScalarNode, Node]] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.report(where or "config", key_node, "a map key must be a single value, not a map or a list")
                continue
            first = seen.setdefault(key_node.value, key_node)
            if first is not key_node:
                self.report(_child(where, key_node.value), key_node,
                            f"duplicate key `{key_node.value}` (first at line {first.start_mark.line + 1}); "
                            "Pulumi refuses duplicate keys, so keep one")
                continue
            out.append((key_node, value_node))
        return out

    def top_level(self, node: Node, key: str, strict: bool) -> str | Secret | None:
        """A config value as Pulumi hands it over: a scalar as written, a map or list as JSON, or a Secret."""
        if isinstance(node, ScalarNode):
            if strict and not self.check_plain(node, key):
                return None
            scalar = self.resolve(node, key)
            if scalar is None:
                return None
            if scalar[0] == "null":
                return ""
            if _short_tag(self.loader.written_tags.get(id(node))) == "!!binary":
                return str(scalar[1])  # yaml.v3 hands over the decoded bytes
            return str(node.value)
        value = self.value(node, key, strict, frozenset(), nested=False)
        if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("secure"), str):
            return Secret(str(value["secure"]))
        return _go_json(value)

    def value(self, node: Node, where: str, strict: bool, active: frozenset[int], *, nested: bool = True) -> Json:
        """A nested value as yaml.v3 decodes it into interface{} (what Pulumi marshals to JSON)."""
        self.budget -= 1
        if self.budget < 0:
            raise StackFileError(f"{self.source}: the config expands to more than {MAX_VALUES} values through aliases; "
                             "Pulumi refuses such files, write the values out")
        if id(node) in active:
            self.report(where, node, "an alias refers to a value that contains it, which Pulumi cannot read; "
                                     "write the value out")
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node, where, strict)
        if strict and node.tag not in (_MAP, _SEQ):
            self.report(where, node, f"the tag `{_short_tag(node.tag)}` is not allowed under fleet:* keys; remove it")
            return None
        inner = active | {id(node)}
        if isinstance(node, SequenceNode):
            return [self.value(item, f"{where}[{i}]", strict, inner) for i, item in enumerate(node.value)]
        assert isinstance(node, MappingNode)
        out = self.mapping(node, where, strict, inner)
        if strict and nested and len(out) == 1 and isinstance(out.get("secure"), str):
            self.report(where, node, "a secret inside a fleet:* value is decrypted by Pulumi but not by this "
                                     "command; make it a plain value")
        return out

    def mapping(self, node: MappingNode, where: str, strict: bool, active: frozenset[int]) -> dict[str, Json]:
        """A map as yaml.v3 decodes it: keys as Go's %v text, explicit keys before merged ones (`<<`)."""
        out: dict[str, Json] = {}
        merges: list[Node] = []
        for key_node, value_node in self.pairs(node, where):
            key_where = _child(where, key_node.value)
            if key_node.tag == _MERGE:
                if strict:
                    self.report(key_where, key_node, "merge keys (`<<`) are not allowed under fleet:* keys; "
                                                     "write the keys out")
                else:
                    merges.append(value_node)
                continue
            key = self.key(key_node, key_where, strict)
            value = self.value(value_node, key_where, strict, active)
            if key is not None:
                out[key] = value
        for merge in merges:
            for source in merge.value if isinstance(merge, SequenceNode) else [merge]:
                if not isinstance(source, MappingNode):
                    self.report(where, source, "`<<` must merge a map or a list of maps")
                    continue
                merged = self.value(source, where, strict, active)
                for merged_key, merged_value in (merged.items() if isinstance(merged, dict) else ()):
                    out.setdefault(merged_key, merged_value)
        return out

    def key(self, node: ScalarNode, where: str, strict: bool) -> str | None:
        """A map key as the text Pulumi gives it (Go's %v of the decoded key); strings only under fleet:*."""
        scalar = self.checked(node, where, strict)
        if scalar is None:
            return None
        kind, value = scalar
        if kind == "str":
            return str(value)
        if strict:
            self.report(where, node, f"the key `{node.value}` is {_describe(scalar)}; keys under fleet:* must be "
                                     f"strings, so quote it (e.g. {json.dumps(node.value)})")
            return None
        if kind == "timestamp":
            self.report(where, node, f"the key `{node.value}` is a timestamp; quote it")
            return None
        return _go_key_text(scalar)

    def scalar(self, node: ScalarNode, where: str, strict: bool) -> Json:
        """A nested scalar as yaml.v3 decodes it into interface{}."""
        scalar = self.checked(node, where, strict)
        if scalar is None:
            return None
        _, value = scalar
        if isinstance(value, float) and not math.isfinite(value):
            self.report(where, node, f"`{node.value}` is {_describe(scalar)}, which Pulumi cannot hand to the "
                                     "program as JSON; quote it or write a finite number")
            return None
        return value

    def checked(self, node: ScalarNode, where: str, strict: bool) -> Scalar | None:
        """`resolve`, after refusing (under fleet:*, `strict`) a plain scalar the two readers read differently."""
        if strict and not self.check_plain(node, where):
            return None
        return self.resolve(node, where)

    def resolve(self, node: ScalarNode, where: str) -> Scalar | None:
        """yaml.v3's reading of a scalar (its tag as written, then its text); None after reporting what Pulumi
        refuses."""
        text = str(node.value)
        if _SURROGATE.search(text):
            self.report(where, node, "the text has a \\u escape of a UTF-16 surrogate, which Pulumi refuses; "
                                     "write the character itself")
            return None
        written = self.loader.written_tags.get(id(node))
        if written is None:
            return ("str", text) if node.style else _v3_resolve(text)
        short = _short_tag(written)
        if short == "!!binary":
            try:
                data = base64.b64decode(re.sub(r"[\r\n]", "", text), validate=True)
                return "str", data.decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as err:
                self.report(where, node, f"this !!binary value cannot be read as UTF-8 text ({err}); "
                                         "write the text instead")
                return None
        if short not in ("!!bool", "!!int", "!!float", "!!null", "!!timestamp"):
            return "str", text  # `!`, `!!str` and tags yaml.v3 does not resolve: the text itself
        scalar = _v3_resolve(text, timestamps=short == "!!timestamp")
        if "!!" + scalar[0] == short:
            return scalar
        if short == "!!float" and scalar[0] == "int":
            return "float", float(scalar[1])  # type: ignore[arg-type]
        self.report(where, node, f"Pulumi cannot read `{text}` as {short}; remove the tag")
        return None

    def check_plain(self, node: ScalarNode, where: str) -> bool:
        """Whether a scalar under fleet:* reads the same to PyYAML (YAML 1.1) and yaml.v3; reports it if not."""
        problem = self._plain_problem(node)
        if problem:
            self.report(where, node, problem)
        return problem is None

    def _plain_problem(self, node: ScalarNode) -> str | None:
        """What is wrong with a scalar under fleet:* (None: both readers agree on it)."""
        text = str(node.value)
        quoted = json.dumps(text)
        written = self.loader.written_tags.get(id(node))
        if written is not None and written != _STR:
            return (f"the tag `{_short_tag(written)}` on `{text}` is not allowed under fleet:* keys; remove it "
                    "(quote the value if it is text)")
        if written is not None or node.style:
            return None  # quoted, block or !!str: a string to both
        if text in _YAML11_BOOLS:
            return (f"`{text}` is {_YAML11_BOOLS[text]} to YAML 1.1 but the string {quoted} to Pulumi; "
                    "write true or false, or quote it")
        tag = node.tag
        if tag in (_BOOL, _NULL):
            return None
        pulumi = _v3_resolve(text)
        if tag == _INT and _DECIMAL_INT.fullmatch(text) and pulumi[0] == "int":
            return None
        if tag == _FLOAT and _DECIMAL_FLOAT.fullmatch(text) and pulumi[0] == "float" and math.isfinite(float(text)):
            return None
        if tag == _STR and pulumi[0] == "str" and not any(p.fullmatch(text) for p in _NUMBER_LIKE):
            return None
        if tag == _TIMESTAMP:
            what = "a date" if _DATE.fullmatch(text) else "a timestamp"
            return f"`{text}` {_readings(what, _describe(pulumi))}; quote it (e.g. {quoted})"
        if tag == _MERGE:
            return f"`{text}` is a merge key to YAML 1.1; quote it (e.g. {quoted})"
        if tag not in (_INT, _FLOAT, _STR):
            return f"`{text}` has a special meaning in YAML 1.1 ({_short_tag(tag)}); quote it (e.g. {quoted})"
        yaml11 = self._yaml11_reading(node)
        if tag == _STR and pulumi[0] == "str":
            return (f"`{text}` looks like a number but is a string to both YAML 1.1 and Pulumi; quote it "
                    f"(e.g. {quoted}) or write a plain decimal number")
        return (f"`{text}` {_readings(yaml11, _describe(pulumi))}; quote it (e.g. {quoted}) "
                "or write a plain decimal number")

    def _yaml11_reading(self, node: ScalarNode) -> str:
        """How PyYAML reads a plain int, float or str scalar, in words."""
        if node.tag == _STR:
            return _describe(("str", str(node.value)))
        try:
            value = self.loader.construct_object(node)
        except ValueError:  # e.g. `0x_`: PyYAML's int pattern allows it, its int() does not
            return "an unreadable number"
        return _describe(("float" if isinstance(value, float) else "int", value))


def _child(where: str, key: str) -> str:
    """The path of a map entry: `fleet:gitlab` + `url` -> `fleet:gitlab.url` (a config key is its own path)."""
    return f"{where}.{key}" if where else key


def _short_tag(tag: str | None) -> str:
    """`tag:yaml.org,2002:int` -> `!!int`; other tags as written."""
    if tag is None:
        return ""
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


def _readings(yaml11: str, pulumi: str) -> str:
    """`is X to YAML 1.1 but Y to Pulumi` (or the same to both)."""
    if yaml11 == pulumi and yaml11 in ("infinity", "minus infinity", "NaN"):
        return f"is {yaml11} to both YAML 1.1 and Pulumi, which JSON cannot carry"
    if yaml11 == pulumi:
        return f"is {yaml11} to both YAML 1.1 and Pulumi, but not to every YAML reader"
    return f"is {yaml11} to YAML 1.1 but {pulumi} to Pulumi"


def _describe(scalar: tuple[str, object]) -> str:
    """A reading in words: `the integer 511`, `the string "yes"`, `true`, ..."""
    kind, value = scalar
    if kind == "str":
        return f"the string {json.dumps(value)}"
    if kind == "timestamp":
        return "a timestamp"
    if kind in ("bool", "null"):
        return json.dumps(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "infinity" if value > 0 else "minus infinity"
        return f"the float {value!r}"
    return f"the integer {value}"


# --- YAML 1.1 (PyYAML) ---------------------------------------------------------------------------------------

# YAML 1.1 booleans that yaml.v3 reads as strings (PyYAML itself reads y/Y/n/N as strings; yaml.v2 and the spec
# do not).
_YAML11_BOOLS = {w: "true" for w in ("y", "Y", "yes", "Yes", "YES", "on", "On", "ON")}
_YAML11_BOOLS.update({w: "false" for w in ("n", "N", "no", "No", "NO", "off", "Off", "OFF")})
_DECIMAL_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)", re.ASCII)
_DECIMAL_FLOAT = re.compile(r"[-+]?(0|[1-9][0-9]*)\.[0-9]+", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}", re.ASCII)
# Plain strings that look numeric to some YAML reader: refused under fleet:* even where both readers agree.
_NUMBER_LIKE = (
    re.compile(r"[-+]?(\.[0-9]|[0-9])[0-9_.]*([eE][-+]?[0-9]+)?", re.ASCII),
    re.compile(r"[-+]?0[xXoObB][0-9A-Za-z_]*", re.ASCII),
    re.compile(r"[-+]?\.(inf|nan)", re.ASCII | re.IGNORECASE),
    re.compile(r"[-+]?[0-9][0-9_]*(:[0-9_]+)+(\.[0-9_]*)?", re.ASCII),
)
_SURROGATE = re.compile("[\ud800-\udfff]")


# --- yaml.v3 (Pulumi) ----------------------------------------------------------------------------------------

_V3_WORDS: dict[str, Scalar] = {}
for _words, _scalar in (
    (("true", "True", "TRUE"), ("bool", True)),
    (("false", "False", "FALSE"), ("bool", False)),
    (("", "~", "null", "Null", "NULL"), ("null", None)),
    ((".nan", ".NaN", ".NAN"), ("float", math.nan)),
    ((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), ("float", math.inf)),
    (("-.inf", "-.Inf", "-.INF"), ("float", -math.inf)),
):
    _V3_WORDS.update(dict.fromkeys(_words, _scalar))
_V3_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?", re.ASCII)
_GO_DOT_FLOAT = re.compile(r"\.[0-9](_?[0-9])*([eE][-+]?[0-9](_?[0-9])*)?", re.ASCII)
_V3_TIMESTAMP = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{1,2})-(?P<d>[0-9]{1,2})"
    r"((?P<sep>[Tt ])(?P<h>[0-9]{1,2}):(?P<mi>[0-9]{1,2}):(?P<s>[0-9]{1,2})([.,](?P<frac>[0-9]+))?"
    r"(?P<tz>Z|[-+][0-9]{2}:[0-9]{2})?)?",
    re.ASCII,
)


def _v3_resolve(text: str, *, timestamps: bool = True) -> Scalar:
    """What gopkg.in/yaml.v3 (resolve.go) makes of a plain scalar: ("str"|"bool"|"null"|"int"|"float"|
    "timestamp", value); a timestamp's value is the RFC 3339 text Go's encoding/json writes for it."""
    if text in _V3_WORDS:
        return _V3_WORDS[text]
    if text[0] == ".":
        if _GO_DOT_FLOAT.fullmatch(text):
            number = float(text.replace("_", ""))
            if math.isfinite(number):
                return "float", number
    elif text[0] in "+-0123456789":
        stamp = _v3_timestamp(text) if timestamps else None
        if stamp is not None:
            return "timestamp", stamp
        plain = text.replace("_", "")
        integer = _go_parse_int(plain, 0)
        if integer is None:
            integer = _go_parse_uint(plain, 0)
        if integer is not None:
            return "int", integer
        if _V3_FLOAT.fullmatch(plain) and math.isfinite(float(plain)):  # Go's ParseFloat fails on overflow
            return "float", float(plain)
        for prefix, base in (("0b", 2), ("0o", 8)):
            if plain.startswith(prefix):
                integer = _go_parse_int(plain[2:], base)
                if integer is None:
                    integer = _go_parse_uint(plain[2:], base)
            elif plain.startswith("-" + prefix):
                integer = _go_parse_int("-" + plain[3:], base)
            if integer is not None:
                return "int", integer
    return "str", text


def _go_parse_uint(text: str, base: int) -> int | None:
    """Go's strconv.ParseUint(text, base, 64) (base 0: 0x/0o/0b prefixes and leading-zero octal), None on error."""
    if not text:
        return None
    if base == 0:
        base = 10
        if text[0] == "0":
            prefix = text[1:2].lower()
            if len(text) >= 3 and prefix in ("b", "o", "x"):
                base, text = {"b": 2, "o": 8, "x": 16}[prefix], text[2:]
            else:
                base, text = 8, text[1:]
    value = 0
    for char in text:
        digit = "0123456789abcdefghijklmnopqrstuvwxyz".find(char.lower()) if char.isascii() else -1
        if not 0 <= digit < base:
            return None
        value = value * base + digit
    return value if value < 2**64 else None


def _go_parse_int(text: str, base: int) -> int | None:
    """Go's strconv.ParseInt(text, base, 64), None on error."""
    negative = text[:1] == "-"
    magnitude = _go_parse_uint(text[1:] if text[:1] in ("-", "+") else text, base)
    if magnitude is None or magnitude > 2**63 - (0 if negative else 1):
        return None
    return -magnitude if negative else magnitude


def _v3_timestamp(text: str) -> str | None:
    """yaml.v3's parseTimestamp (Go layouts 2006-1-2T15:4:5.999999999Z07:00, its lower-case t form,
    2006-1-2 15:4:5.999999999 and 2006-1-2) as Go's time.Time MarshalJSON text (RFC 3339), None if not one."""
    match = _V3_TIMESTAMP.fullmatch(text)
    if match is None or (match["sep"] in ("T", "t")) != (match["tz"] is not None):
        return None
    year, month, day = int(match["y"]), int(match["mo"]), int(match["d"])
    hour, minute, second = (int(match[k] or 0) for k in ("h", "mi", "s"))
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year or 2000, month)[1]:
        return None
    if hour >= 24 or minute >= 60 or second >= 60:
        return None
    offset = 0
    if match["tz"] not in (None, "Z"):
        tz_hours, tz_minutes = int(match["tz"][1:3]), int(match["tz"][4:6])
        if tz_hours > 24 or tz_minutes > 60:
            return None
        offset = (tz_hours * 60 + tz_minutes) * (-1 if match["tz"][0] == "-" else 1)
    fraction = (match["frac"] or "")[:9].rstrip("0")
    zone = "Z" if offset == 0 else f"{'-' if offset < 0 else '+'}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    return (f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
            f"{'.' + fraction if fraction else ''}{zone}")


# --- Go's text for values -------------------------------------------------------------------------------------

def _shortest_digits(number: float) -> tuple[str, int]:
    """The shortest digits that round-trip abs(number), and the position of the decimal point in them."""
    _, digits, exponent = Decimal(repr(abs(number))).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    return text, len(text) + exponent


def _exponent_form(digits: str, point: int) -> str:
    """Go's %e for shortest digits: `1.5e+07`, `1e-07`."""
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exponent = point - 1
    return f"{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def _go_json_float(number: float) -> str:
    """encoding/json's text for a finite float64: `1` for 1.0, `1e+21`, `1e-7`."""
    sign = "-" if math.copysign(1.0, number) < 0 else ""
    digits, point = _shortest_digits(number)
    if number != 0 and not 1e-6 <= abs(number) < 1e21:
        text = _exponent_form(digits, point)
        if text[-4:-1] == "e-0":
            text = text[:-2] + text[-1]  # e-07 -> e-7, as encoding/json does
        return sign + text
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _go_key_text(scalar: Scalar) -> str:
    """Go's fmt %v of a decoded map key, as Pulumi turns non-string keys into strings."""
    kind, value = scalar
    if kind == "null":
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        digits, point = _shortest_digits(value)
        sign = "-" if math.copysign(1.0, value) < 0 else ""
        if value != 0 and not -4 <= point - 1 < 6:  # %v is %g: shortest digits, %e from 1e+06 on
            return sign + _exponent_form(digits, point)
        return _go_json_float(value)
    return str(value)


def _go_json_string(text: str) -> str:
    """encoding/json's text for a string (UTF-8 kept; <, >, &, U+2028 and U+2029 escaped)."""
    out = json.dumps(text, ensure_ascii=False)
    for char in "<>&\u2028\u2029":
        out = out.replace(char, f"\\u{ord(char):04x}")
    return out


def _go_json(value: Json) -> str:
    """encoding/json's Marshal of a decoded value: compact, map keys sorted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_json_float(value)
    if isinstance(value, str):
        return _go_json_string(value)
    if isinstance(value, list):
        return "[" + ",".join(_go_json(item) for item in value) + "]"
    return "{" + ",".join(f"{_go_json_string(k)}:{_go_json(value[k])}" for k in sorted(value)) + "}"
