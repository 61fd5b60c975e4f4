"""The README's model table states the true parameter counts of every registered model."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import maedfer

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(?P<name>[a-z0-9_]+)` \|.*\| (?P<params>[\d,]+)(?: \(defaults\))? \|$")


def test_model_table_parameter_counts() -> None:
    rows = {m["name"]: int(m["params"].replace(",", "")) for m in map(ROW.match, README.read_text().splitlines()) if m}
    assert set(rows) == set(maedfer.list_models(include_official=True))  # every model listed, nothing extra
    for name, expected in rows.items():
        with torch.device("meta"):
            model = maedfer.create_model(name)
        assert sum(p.numel() for p in model.parameters()) == expected, name
