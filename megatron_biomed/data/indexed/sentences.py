"""Sentence splitting for ``--split-sentences``: nltk Punkt with a biomedical model by default.

Generic English Punkt ends sentences at ``et al.``, ``i.v.`` or ``approx.``; so by default we use
Punkt parameters trained (tools/train_punkt.py, nltk's PunktTrainer) on synthetic PubMed-style
text of our own (sample_text.py), plus a short list of biomedical abbreviations. The model is
trained on first use and cached as JSON. A user's own model is taken when given:

* ``--punkt-model path.json`` (written by tools/train_punkt.py) or a pickled ``PunktParameters``;
* ``--punkt-model nltk`` (or ``auto`` with the NLTK_DATA environment variable set and holding
  ``tokenizers/punkt_tab/english``): NLTK's own English Punkt.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from megatron_biomed.data.indexed import sample_text

if TYPE_CHECKING:
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

# Abbreviations of biomedical abstracts, lower-case without the final period (Punkt's convention).
BIOMEDICAL_ABBREVIATIONS = (
    "al", "approx", "ca", "cf", "e.g", "i.e", "vs", "fig", "figs", "eq", "ref", "refs", "dr", "prof",
    "no", "nos", "vol", "suppl", "i.v", "i.p", "i.m", "s.c", "p.o", "i.c.v", "b.i.d", "t.i.d", "q.i.d",
    "q.d", "p.r.n", "resp", "max", "min", "incl", "spp", "sp", "var", "subsp", "sd", "s.d",
    "s.e.m", "s.e", "mol", "wt", "conc", "temp", "st", "jr", "inc", "ltd", "co", "dept", "univ",
    "u.s", "u.k",
)
_CACHE_VERSION = "1"


def train_punkt(texts: Iterable[str], extra_abbreviations: Iterable[str] = BIOMEDICAL_ABBREVIATIONS,
                ) -> PunktParameters:
    """Train Punkt parameters on ``texts`` with nltk's PunktTrainer, then add
    ``extra_abbreviations`` (lower-case, no final period)."""
    trainer = _punkt().PunktTrainer()
    trainer.INCLUDE_ALL_COLLOCS = True
    for t in texts:
        trainer.train(t, finalize=False)
    trainer.finalize_training()
    params = trainer.get_params()
    params.abbrev_types.update(a.lower().rstrip(".") for a in extra_abbreviations)
    return params


def params_to_json(params: PunktParameters) -> dict:
    return {
        "format": "punkt-params-v1",
        "abbrev_types": sorted(params.abbrev_types),
        "collocations": sorted([a, b] for a, b in params.collocations),
        "sent_starters": sorted(params.sent_starters),
        "ortho_context": dict(sorted(params.ortho_context.items())),
    }


def params_from_json(data: dict, source: str = "<json>") -> PunktParameters:
    if data.get("format") != "punkt-params-v1":
        raise ValueError(f"{source}: not a Punkt parameter file from tools/train_punkt.py "
                         f"(format {data.get('format')!r})")
    p = _punkt().PunktParameters()
    p.abbrev_types = set(data["abbrev_types"])
    p.collocations = {tuple(c) for c in data["collocations"]}
    p.sent_starters = set(data["sent_starters"])
    for k, v in data["ortho_context"].items():
        p.ortho_context[k] = int(v)
    return p


def save_params(params: PunktParameters, path: str | os.PathLike) -> None:
    """Save as JSON (``.json``) or as a pickle (any other suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    if path.suffix == ".json":
        tmp.write_text(json.dumps(params_to_json(params)))
    else:
        tmp.write_bytes(pickle.dumps(params))
    os.replace(tmp, path)


def load_params(path: str | os.PathLike) -> PunktParameters:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--punkt-model {path}: no such file")
    if path.suffix == ".json":
        return params_from_json(json.loads(path.read_text()), str(path))
    obj = pickle.loads(path.read_bytes())  # a model the user chose to trust
    if isinstance(obj, _punkt().PunktSentenceTokenizer):
        obj = obj._params
    if not isinstance(obj, _punkt().PunktParameters):
        raise TypeError(f"--punkt-model {path}: holds {type(obj).__name__}, not Punkt parameters")
    return obj


def _cache_dir() -> Path:
    base = os.environ.get("MEGATRON_BIOMED_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "megatron_biomed")
    return Path(base)


def bundled_model_path() -> Path:
    """Where the default biomedical Punkt model is cached (keyed by its training recipe)."""
    recipe = Path(sample_text.__file__).read_bytes() + repr(BIOMEDICAL_ABBREVIATIONS).encode()
    digest = hashlib.sha256(recipe + _CACHE_VERSION.encode()).hexdigest()[:12]
    return _cache_dir() / f"punkt_biomed_{digest}.json"


def bundled_params() -> PunktParameters:
    """The default biomedical model, trained on our synthetic abstracts at first use and cached."""
    path = bundled_model_path()
    if path.is_file():
        return load_params(path)
    params = train_punkt(sample_text.synthetic_abstracts(2000, seed=1234))
    try:
        save_params(params, path)
    except OSError:
        pass  # read-only home: train again next time
    return params


def _punkt() -> ModuleType:
    """nltk's Punkt module, imported at first use: importing nltk takes seconds, and only --split-sentences and
    tools/train_punkt.py need it (preprocessing without it starts at once)."""
    import nltk.tokenize.punkt  # heavy: nltk's import takes about 4 s on this machine

    return nltk.tokenize.punkt


def _nltk_punkt() -> PunktSentenceTokenizer:
    from nltk.tokenize import PunktTokenizer  # heavy: nltk (see _punkt)

    try:
        return PunktTokenizer("english")
    except LookupError as e:
        raise FileNotFoundError("--punkt-model nltk: NLTK's punkt_tab/english was not found in "
                                "NLTK_DATA; download it there or use the bundled model") from e


def _nltk_data_has_punkt() -> bool:
    roots = [r for r in os.environ.get("NLTK_DATA", "").split(os.pathsep) if r]
    return any((Path(r) / "tokenizers" / "punkt_tab" / "english").is_dir() for r in roots)


def load_sentence_splitter(model: str = "auto", keep_newlines: bool = False) -> Callable[[str], list[str]]:
    """A function text -> sentences. ``model``: ``auto``, ``bundled``, ``nltk`` or a file path.

    With ``keep_newlines`` every sentence keeps the whitespace (newlines included) that follows
    it, so joining the sentences gives back the text (minus leading whitespace)."""
    if model == "auto":
        model = "nltk" if _nltk_data_has_punkt() else "bundled"
    if model == "nltk":
        splitter = _nltk_punkt()
    elif model == "bundled":
        splitter = _punkt().PunktSentenceTokenizer(bundled_params())
    else:
        splitter = _punkt().PunktSentenceTokenizer(load_params(model))

    if not keep_newlines:
        return splitter.tokenize

    def split_keeping_whitespace(text: str) -> list[str]:
        spans = list(splitter.span_tokenize(text))
        return [text[s:(spans[i + 1][0] if i + 1 < len(spans) else len(text))]
                for i, (s, _) in enumerate(spans)]

    return split_keeping_whitespace
