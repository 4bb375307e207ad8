"""Golden files: ``<name>.sql`` holds cases (each starting with a ``-- case: title`` line),
``<name>.expected`` what each case gives, as JSON. Set SQLML_UPDATE_GOLDEN=1 to rewrite the
expected files, then review the diff."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).parent / "golden"


def cases(path: Path) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for chunk in path.read_text().split("-- case: ")[1:]:
        title, _, body = chunk.partition("\n")
        out.append((title.strip(), body.strip()))
    return out


def check(path: Path, render: Callable[[str], Any]) -> None:
    got = {title: render(sql) for title, sql in cases(path)}
    expected_path = path.with_suffix(".expected")
    text = json.dumps(got, indent=2, ensure_ascii=False, default=str) + "\n"
    if os.environ.get("SQLML_UPDATE_GOLDEN") == "1":
        expected_path.write_text(text)
    expected = json.loads(expected_path.read_text())
    assert list(got) == list(expected), "cases added or removed: run with SQLML_UPDATE_GOLDEN=1"
    for title in expected:
        assert json.loads(json.dumps(got[title], default=str)) == expected[title], title
