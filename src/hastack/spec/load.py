"""Load a YAML spec into a Spec, or fail with errors that name file, line and field."""

from __future__ import annotations

import difflib
import os
import re
import stat
from pathlib import Path as FsPath
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hastack.spec import model
from hastack.spec.errors import Path, SpecError, SpecLoadError
from hastack.spec.references import validate_references

Marks = dict[Path, tuple[int, int]]

# libyaml's loader is ~3x faster and keeps the node marks we report lines from.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Regex constraints explained in words: what the operator can act on.
_PATTERN_HELP = {
    r"^[a-z][a-z0-9-]{0,62}$": "a lower-case name: letters, digits and '-', starting with a letter, at most 63",
    r"^[A-Za-z0-9_.-]{1,15}$": "an interface name: letters, digits, '_', '.', '-', at most 15",
    r"^[A-Za-z0-9_.,:/@%+=-]{1,255}$": "a plain value: no spaces, quotes, newlines or shell characters",
    r"^fence_[a-z0-9_]{1,40}$": "a fence agent name such as fence_ipmilan or fence_redfish",
    r"^HA[0-9]{3}$": "a check code such as HA110 (see `hastack check --list`)",
}


def _all_field_names() -> set[str]:
    names: set[str] = set()
    for obj in vars(model).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj is not BaseModel:
            names.update(obj.model_fields)
    return names


# A spec is a few hundred KiB even for 10,000 nodes; a larger file, or one that is not a file
# (/dev/zero), is refused before it is read: one spec must not be able to take the machine down.
MAX_SPEC_BYTES = 4 << 20
# Aliases (`fence: *ipmi`) are fine; thousands of them are a YAML bomb ("billion laughs").
MAX_ALIASES = 1000


class _Walk:
    """The state of one mark walk: nodes seen (an alias is a node seen again) and their count."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.aliases = 0


def _marks(node: yaml.Node, path: Path, marks: Marks, errors: list[SpecError], walk: _Walk) -> None:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if id(node) in walk.seen:  # an alias: its node was walked where it was defined
        walk.aliases += 1
        return
    walk.seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            if key in seen:
                errors.append(
                    SpecError(
                        (*path, key), f"key {key!r} appears twice in the same mapping",
                        "YAML would silently keep only the last one; remove the duplicate",
                    ).located("", key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                )
            seen.add(key)
            _marks(value_node, (*path, key), marks, errors, walk)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _marks(item, (*path, i), marks, errors, walk)


def _locate(path: Path, marks: Marks) -> tuple[int, int]:
    for end in range(len(path), -1, -1):
        if path[:end] in marks:
            return marks[path[:end]]
    return (1, 1)


def _clean_loc(loc: tuple[Any, ...]) -> Path:
    # pydantic adds tags such as 'function-after[...]' for validators; drop them.
    return tuple(p for p in loc if isinstance(p, int) or "[" not in str(p))


_SECRET_WORDS = ("password", "passwd", "secret", "token", "key", "community")


def _shown(path: Path, value: object) -> str:
    """A rejected value as an error may quote it: hidden under a secret-like field, else short."""
    if any(w in str(p).lower() for p in path for w in _SECRET_WORDS):
        return "the value (hidden: it may be a secret)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _from_pydantic(exc: ValidationError, known_fields: set[str], marks: Marks) -> list[SpecError]:
    out: list[SpecError] = []
    echoes: list[SpecError] = []
    for err in exc.errors(include_url=False):
        path = _clean_loc(tuple(err["loc"]))
        kind = err["type"]
        hint = ""
        message = err["msg"]
        if kind == "extra_forbidden":
            name = str(path[-1]) if path else ""
            message = f"unknown field {name!r}"
            close = difflib.get_close_matches(name, sorted(known_fields), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "remove it; see examples/ for the fields"
        elif kind == "missing":
            message = "this field is required"
            hint = "add it; see examples/three-controller.yaml"
        elif kind == "string_pattern_mismatch":
            pattern = str((err.get("ctx") or {}).get("pattern", ""))
            message = f"{_shown(path, err['input'])} is not allowed here"
            hint = "use " + _PATTERN_HELP.get(pattern, f"a value matching {pattern}")
        elif kind in ("enum", "literal_error"):
            hint = "use one of the values listed"
        elif kind.startswith("ip_v4"):
            what = "network" if "network" in kind else "address"
            message = f"{_shown(path, err['input'])} is not a valid IPv4 {what}"
            hint = "write a dotted IPv4 address such as 10.20.0.11 (networks as 10.20.0.0/24)"
        # A value the placement defaults copied (a bad node name repeated in
        # corosync.nodes) is an echo of an error reported where it was written.
        echo = kind != "missing" and path not in marks
        (echoes if echo else out).append(SpecError(path, message, hint))
    return out or echoes


def parse_spec(text: str, source: str = "<spec>") -> model.Spec:
    """Parse spec text. Pure: no file access. Raises SpecLoadError."""
    errors: list[SpecError] = []
    loader = None
    try:
        loader = _Loader(text)
        root = loader.get_single_node()
        walk = _Walk()
        marks: Marks = {}
        if root is not None:
            _marks(root, (), marks, errors, walk)
        if walk.aliases > MAX_ALIASES:
            raise SpecLoadError([SpecError((), f"{walk.aliases} YAML aliases (at most {MAX_ALIASES})",
                                           "write the values out; a spec needs a few aliases at most", source, 1, 1)])
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise SpecLoadError(
            [SpecError((), f"not valid YAML: {exc.problem or exc}", "fix the syntax at this line",
                       source, line, col)]
        ) from None
    except yaml.YAMLError as exc:  # the reader's: a character YAML does not allow
        raise SpecLoadError([_reader_error(text, exc, source)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        raise SpecLoadError(
            [SpecError((), "the spec must be a YAML mapping (cluster:, networks:, nodes:, vips:)",
                       "start from examples/three-controller.yaml", source, 1, 1)]
        )
    errors = [e.located(source, e.line, e.column) for e in errors]
    spec: model.Spec | None = None
    try:
        spec = model.Spec.model_validate(data)
    except ValidationError as exc:
        errors.extend(_from_pydantic(exc, _all_field_names(), marks))
    if spec is not None:
        errors.extend(validate_references(spec))
    if errors:
        raise SpecLoadError(
            [e if e.line else e.located(source, *_locate(e.path, marks)) for e in errors]
        )
    assert spec is not None
    return spec


# What YAML's reader refuses: control characters other than tab, newline and carriage return.
_NOT_PRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff]")


def _reader_error(text: str, exc: yaml.YAMLError, source: str) -> SpecError:
    bad = _NOT_PRINTABLE.search(text)
    if bad is None:
        return SpecError((), f"not valid YAML: {str(exc).splitlines()[0]}", "a spec is plain UTF-8 text", source, 1, 1)
    line = text.count("\n", 0, bad.start()) + 1
    column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
    return SpecError((), f"the character U+{ord(bad.group()):04X} is not allowed in YAML",
                     "remove it; a spec is plain text", source, line, column)


def load_spec(path: str | FsPath) -> model.Spec:
    p = FsPath(path)
    source = repr(str(p))[1:-1]  # a newline in a file name stays on one line of every message
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            raise SpecLoadError([SpecError((), "the spec is not a regular file", "give the path of a YAML file",
                                           source)])
        if st.st_size > MAX_SPEC_BYTES:
            raise SpecLoadError([SpecError((), f"the spec is {st.st_size >> 20} MiB; at most "
                                           f"{MAX_SPEC_BYTES >> 20} MiB is read", "is this the right file?", source)])
        with open(p, "rb") as fh:  # read at most the bound, even if the file grew since
            raw = fh.read(MAX_SPEC_BYTES + 1)
        text = raw[:MAX_SPEC_BYTES].decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecLoadError([SpecError((), f"cannot read the spec: {exc}", "check the path", source)]) from None
    return parse_spec(text, source)
