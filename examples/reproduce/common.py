"""What the three reproduction scripts share: the shared corpora split deterministically into train / held-out,
the project's CLIs run as subprocesses (tools/*.py, exactly as a user runs them), tables, and the
benchmark-style JSON result each script writes next to itself (``examples/reproduce/results/<claim>.json``).

The drivers only move files and read the tools' reports; every number comes from a tool: tokenizers from
``tools/train_tokenizer.py``, fragmentation from ``tools/tokenizer_report.py``, ``.bin/.idx`` from
``tools/preprocess_data.py``, models from ``tools/pretrain.py`` / ``tools/finetune.py``, and perplexity, bits per
byte and accuracies from ``tools/evaluate.py``'s JSON report.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import re
import runpy
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
PUBMED_JSONL = SHARED / "pubmed_abstracts" / "combined" / "pubmed_abstracts_shared.jsonl"
C4_JSONL = SHARED / "c4" / "c4_en_validation_sample_500.jsonl"
WIKITEXT = SHARED / "wikitext2" / "wikitext-2-v1_valid.tokens.txt"
PUBMEDQA = SHARED / "pubmedqa" / "pqal_trainval_500.json"

# Our choice: 10% of each corpus held out for evaluation, chosen by a hash of a stable key (PMID, URL or
# title), so the split never depends on file order, the seed or the machine.
HELDOUT_FRACTION = 0.10


class ReproduceError(RuntimeError):
    """A shared corpus is missing or a tool failed; the message names the file or the command and its log."""


# --- data ---------------------------------------------------------------------------------------------------
def require(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ReproduceError(f"shared data not found: {', '.join(missing)} (the reproductions read the shared "
                             f"corpora at {SHARED}; see each folder's SOURCE.md)")


def is_heldout(key: str, fraction: float = HELDOUT_FRACTION) -> bool:
    """Deterministic split: the first 8 bytes of sha256(key) as a number in [0, 1)."""
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return h / 2**64 < fraction


def pubmed_documents() -> list[tuple[str, str]]:
    """(key, "title\\nabstract") for every shared PubMed abstract; key = PMID, or the title where there is none."""
    require(PUBMED_JSONL)
    docs = []
    for line in PUBMED_JSONL.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            key = str(r.get("pmid") or r.get("title") or r["abstract"][:200])
            docs.append((key, f"{r.get('title') or ''}\n{r['abstract']}".strip()))
    return docs


def c4_documents() -> list[tuple[str, str]]:
    require(C4_JSONL)
    rows = [json.loads(x) for x in C4_JSONL.read_text(encoding="utf-8").splitlines() if x.strip()]
    return [(r.get("url") or r["text"][:200], r["text"]) for r in rows]


_ARTICLE = re.compile(r"^ = [^=].* = $")


def wikitext_documents() -> list[tuple[str, str]]:
    """WikiText-2's articles (split at the ``= Title =`` lines), keyed by title (articles whose titles are the
    same, such as ``<unk>``, fall on the same side of the split), lines stripped."""
    require(WIKITEXT)
    docs, title, lines = [], None, []
    for line in WIKITEXT.read_text(encoding="utf-8").splitlines():
        if _ARTICLE.match(line):
            if title is not None:
                docs.append((title, "\n".join(x for x in lines if x)))
            title, lines = line.strip(" ="), [line.strip()]
        elif title is not None:
            lines.append(line.strip())
    if title is not None:
        docs.append((title, "\n".join(x for x in lines if x)))
    return docs


def split(docs: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(train texts, held-out texts) by :func:`is_heldout` on each key."""
    train = [t for k, t in docs if not is_heldout(k)]
    held = [t for k, t in docs if is_heldout(k)]
    return train, held


def hash_order(texts: Iterable[str]) -> list[str]:
    """``texts`` in the order of their sha256 (a fixed shuffle: no source file comes first)."""
    return sorted(texts, key=lambda t: hashlib.sha256(t.encode("utf-8")).digest())


def take_bytes(texts: Iterable[str], budget: int) -> list[str]:
    """The first texts (in order) whose UTF-8 sizes add up to at most ``budget`` bytes."""
    out, used = [], 0
    for t in texts:
        n = len(t.encode("utf-8"))
        if used + n > budget:
            break
        out.append(t)
        used += n
    return out


def nbytes(texts: Iterable[str]) -> int:
    return sum(len(t.encode("utf-8")) for t in texts)


def write_jsonl(path: Path, texts: Iterable[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    return path


# --- running the tools --------------------------------------------------------------------------------------
class Runner:
    """Runs ``tools/*.py`` in a subprocess (one process, OMP_NUM_THREADS=1), each command's output in a log
    file under ``work/logs``; a failing command raises with the tail of its log.

    ``in_process``: call each tool's ``main(argv)`` in this interpreter instead (the same argv; the tests'
    smoke run uses it so that torch and megatron-core are imported once, not once per tool)."""

    def __init__(self, work: Path, verbose: bool = False, in_process: bool = False):
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.verbose = verbose
        self.in_process = in_process
        self.count = 0
        self.seconds: dict[str, float] = {}

    def tool(self, name: str, *args: object, label: str | None = None) -> str:
        self.count += 1
        label = label or f"{self.count:02d}-{Path(name).stem}"
        argv = [str(a) for a in args]
        cmd = [sys.executable, str(ROOT / "tools" / name), *argv]
        log = self.logs / f"{label}.log"
        print(f"  [{time.strftime('%H:%M:%S')}] {label}: tools/{name} ...", flush=True)
        t0 = time.time()
        rc, output = self._call(name, argv) if self.in_process else self._spawn(cmd, log)
        self.seconds[label] = round(time.time() - t0, 1)
        if self.in_process:
            log.write_text(" ".join(cmd) + "\n\n" + output)
        if self.verbose:
            print(output)
        if rc != 0:
            tail = "\n".join(output.splitlines()[-25:])
            raise ReproduceError(f"{label} failed (exit {rc}); log {log}:\n{tail}")
        return output

    @staticmethod
    def _spawn(cmd: list[str], log: Path) -> tuple[int, str]:
        """The command's output goes to ``log`` as it runs (tail it to follow a long step)."""
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        with log.open("w") as f:
            f.write(" ".join(cmd) + "\n\n")
            f.flush()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, text=True)
        return proc.returncode, log.read_text().split("\n\n", 1)[1]

    @staticmethod
    def _call(name: str, argv: list[str]) -> tuple[int, str]:
        """Run ``tools/<name>`` in this process as its own ``__main__`` (the tools import the library under their
        ``__main__`` guard), with ``argv`` as its command line; its exit code and output."""
        path = ROOT / "tools" / name
        out = io.StringIO()
        saved_argv = sys.argv
        sys.argv = [str(path), *argv]
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                try:
                    runpy.run_path(str(path), run_name="__main__")
                    rc = 0
                except SystemExit as e:
                    rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.argv = saved_argv
        return rc, out.getvalue()


def eval_report(path: Path) -> dict[tuple[str, str], float]:
    """``tools/evaluate.py --output`` JSON as {(task, metric): value}."""
    rows = json.loads(path.read_text())["results"]
    return {(r["task"], r["metric"]): r["value"] for r in rows}


# --- output -------------------------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "-|-".join("-" * w for w in widths)]
    out += [" | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    return "\n".join(out)


def machine() -> dict:
    """Where and under what load the numbers were measured (wall times depend on both)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"host": platform.node(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "1"), "git_commit": commit}


def write_result(claim: str, result: dict, smoke: bool, out_dir: Path | None = None) -> Path:
    """``results/<claim>.json`` (``<claim>.smoke.json`` for --smoke runs, which are never the reported ones)."""
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{claim}{'.smoke' if smoke else ''}.json"
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return path


def base_parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", default=None, help="where data, tokenizers and checkpoints go "
                                                    "(default runs/reproduce/<claim>)")
    p.add_argument("--results-dir", default=None, help=f"where the JSON result goes (default {RESULTS})")
    p.add_argument("--seed", type=int, default=1234, help="train.seed of every training run")
    p.add_argument("--smoke", action="store_true",
                   help="minimal sizes: checks the whole pipeline runs (seconds); its numbers mean nothing")
    p.add_argument("--verbose", action="store_true", help="print every tool's output")
    p.add_argument("--in-process", action="store_true",
                   help="call the tools' main() in this process instead of one subprocess each (the tests' smoke run)")
    return p
