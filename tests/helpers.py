"""Shared test helpers: example specs and small spec variants."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from hastack.credentials.model import Secrets, complete
from hastack.spec.load import parse_spec
from hastack.spec.model import Spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
THREE = EXAMPLES / "three-controller.yaml"
SEED = EXAMPLES / "seed-two-node.yaml"


def raw(path: Path = THREE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def spec_from(data: dict[str, Any]) -> Spec:
    return parse_spec(yaml.safe_dump(data), "test.yaml")


def variant(path: Path = THREE, **changes: Any) -> Spec:
    """The example with top-level sections merged with `changes` (dicts merge one level)."""
    data = copy.deepcopy(raw(path))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return spec_from(data)


def secrets_for(spec: Spec) -> Secrets:
    return complete(spec, {})[0]
