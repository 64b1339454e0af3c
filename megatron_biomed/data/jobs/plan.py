"""Which tasks of which stages still have to run: the expected digest of every task against its marker."""

from __future__ import annotations

import os
from dataclasses import dataclass

from megatron_biomed.data.jobs.markers import MARKER_DIR, digest_of, read_marker
from megatron_biomed.data.jobs.spec import PipelineSpec
from megatron_biomed.data.jobs.stages import Stage, enabled_stages


@dataclass
class StagePlan:
    stage: Stage
    tasks: int
    ready: bool  # every task of the stage before it has a valid marker (so this stage's digests are known)
    digests: list[str | None]
    pending: list[int]  # tasks without a valid marker

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def complete(self) -> bool:
        return self.ready and not self.pending


@dataclass
class Plan:
    spec: PipelineSpec
    stages: list[StagePlan]

    def get(self, name: str) -> StagePlan:
        for sp in self.stages:
            if sp.name == name:
                return sp
        raise KeyError(f"stage {name!r} is not part of this pipeline ({', '.join(s.name for s in self.stages)})")

    def previous(self, name: str) -> StagePlan | None:
        names = [s.name for s in self.stages]
        i = names.index(name)
        return self.stages[i - 1] if i else None

    @property
    def complete(self) -> bool:
        return all(sp.complete for sp in self.stages)

    def describe(self) -> str:
        lines = []
        for sp in self.stages:
            if sp.complete:
                state = "complete"
            elif sp.ready:
                state = f"{sp.tasks - len(sp.pending)}/{sp.tasks} done, to run: {_ranges(sp.pending)}"
            else:
                state = "waiting for the stage before it"
            lines.append(f"  {sp.name:<12}{sp.tasks:>5} task(s)  {state}")
        return "\n".join(lines)


def _file_ids(group) -> list:
    out = []
    for t in group:
        st = os.stat(t.input)
        out.append([str(t.input), t.stem, st.st_size, st.st_mtime_ns])
    return out


def plan(spec: PipelineSpec) -> Plan:
    settings = spec.settings_digest()
    out: list[StagePlan] = []
    upstream: str | None = None
    for i, stage in enumerate(enabled_stages(spec)):
        n = stage.count(spec)
        if i == 0:
            groups = spec.groups()
            digests = [digest_of(stage.name, k, n, settings, _file_ids(groups[k])) for k in range(n)]
        elif upstream is not None:
            digests = [digest_of(stage.name, k, n, settings, upstream) for k in range(n)]
        else:
            digests = [None] * n
        pending = []
        for k, want in enumerate(digests):
            marker = read_marker(spec.work, stage.name, k)
            if want is None or marker is None or marker.get("digest") != want:
                pending.append(k)
        sp = StagePlan(stage, n, ready=i == 0 or upstream is not None, digests=digests, pending=pending)
        out.append(sp)
        upstream = digest_of(*digests) if sp.complete else None
    return Plan(spec, out)


def marker_dir(spec: PipelineSpec, stage: str) -> str:
    return str(spec.work / MARKER_DIR / stage)


def _ranges(tasks: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5" (Slurm's --array syntax)."""
    parts, i = [], 0
    while i < len(tasks):
        j = i
        while j + 1 < len(tasks) and tasks[j + 1] == tasks[j] + 1:
            j += 1
        parts.append(str(tasks[i]) if i == j else f"{tasks[i]}-{tasks[j]}")
        i = j + 1
    return ",".join(parts)


array_spec = _ranges
