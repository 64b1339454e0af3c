"""Published recipe values and the one check that compares them with the presets.

A test file lists rows ``Published(preset, field, value, source)`` (``field`` a dotted path into the preset's
ExperimentConfig, e.g. ``"optimizer.lr"``, ``"model.vocab_size"``; ``source`` where the value was published,
e.g. ``"BioMedLM paper (arXiv 2403.18421) Table 5"``) and parametrises one test over them:

    ROWS = [Published("biomedlm-2.7b", "optimizer.lr", 1.6e-4, "BioMedLM paper ... Table 5"), ...]

    @pytest.mark.parametrize("row", ROWS, ids=row_id)
    def test_published(row):
        check(row)

``check(ROWS)`` checks a whole table in one test; ``check_launcher(ROWS, path)`` checks that a launcher's
recipe file spells out each row's field as a literal ``--set field=value`` with the published value. A failure
names the preset (or launcher), the field, both values and the source, so drift names what it broke.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.config.loading import apply_overrides
from megatron_biomed.config.presets import get_preset

# `--set section.field=value` with a literal value (not a "${VARIABLE}"), up to a comment or the line's end.
SET_LITERAL = re.compile(r"--set\s+([A-Za-z_][\w.]*)=([^\s\"$#]+)")


@dataclass(frozen=True)
class Published:
    preset: str
    field: str
    value: object
    source: str


def preset_value(preset: str, field: str) -> object:
    """The value at dotted ``field`` of a fresh copy of ``preset``."""
    value = get_preset(preset)
    for part in field.split("."):
        if not hasattr(value, part):
            raise AssertionError(f"{preset}: no field {field!r} (stops at {part!r})")
        value = getattr(value, part)
    return value


def same(a: object, b: object) -> bool:
    """Equal; floats equal to 1e-12 relative (so 1.6e-4 written two ways still matches)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-12)
    return type(a) is type(b) and a == b


def check(rows: Published | Iterable[Published]) -> None:
    """Fail unless each preset holds its published value (one row, or many: every mismatch is listed)."""
    rows = [rows] if isinstance(rows, Published) else list(rows)
    wrong = []
    for row in rows:
        got = preset_value(row.preset, row.field)
        if not same(got, row.value):
            wrong.append(f"{row.preset} {row.field} = {got!r}, published {row.value!r} ({row.source})")
    assert not wrong, "\n".join(wrong)


def launcher_sets(path: str | Path) -> tuple[ExperimentConfig, set[str]]:
    """The literal ``--set`` values of a launcher's recipe file applied to a default ExperimentConfig (with the
    config's own parsing), and the dotted fields they set."""
    found = SET_LITERAL.findall(Path(path).read_text())
    cfg = apply_overrides(ExperimentConfig(), [f"{k}={v}" for k, v in found])
    return cfg, {k for k, _ in found}


def check_launcher(rows: Iterable[Published], path: str | Path) -> None:
    """Fail unless the launcher sets every row's field to its published value."""
    cfg, fields = launcher_sets(path)
    wrong = []
    for row in rows:
        if row.field not in fields:
            wrong.append(f"{path}: no literal --set {row.field}=... (published {row.value!r}, {row.source})")
            continue
        got = cfg
        for part in row.field.split("."):
            got = getattr(got, part)
        if not same(got, row.value):
            wrong.append(f"{path}: --set {row.field}={got!r}, published {row.value!r} ({row.source})")
    assert not wrong, "\n".join(wrong)


def row_id(row: Published) -> str:
    return f"{row.preset}:{row.field}"
