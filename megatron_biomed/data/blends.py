"""Named data blends: which corpora a recipe trains on, and in what proportion.

A recipe names its components (``pubmed``, ``c4``, ``wikipedia`` ...); the user supplies the
``.bin/.idx`` prefix of each, and :meth:`BlendRecipe.resolve` returns Megatron-LM's
``[weight, prefix, weight, prefix, ...]`` list that ``data/gpt_dataset.build_gpt_datasets`` takes.
On the command line a blend is ``NAME:component=prefix,component=prefix`` (:func:`parse_blend_spec`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class BlendError(ValueError):
    """A blend name, component or prefix is wrong; the message says which and what is expected."""


@dataclass(frozen=True)
class BlendComponent:
    name: str
    weight: float
    description: str = ""


@dataclass(frozen=True)
class BlendRecipe:
    """A named mixture; weights are relative (normalised on resolve)."""

    name: str
    components: tuple[BlendComponent, ...]
    description: str = ""

    def __post_init__(self) -> None:
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise BlendError(f"blend {self.name!r}: duplicate component names {names}")
        if not self.components or any(c.weight <= 0 for c in self.components):
            raise BlendError(f"blend {self.name!r}: needs components with positive weights")

    @property
    def weights(self) -> dict[str, float]:
        total = sum(c.weight for c in self.components)
        return {c.name: c.weight / total for c in self.components}

    def resolve(self, prefixes: Mapping[str, str]) -> list:
        """``[w1, prefix1, w2, prefix2, ...]`` with normalised weights, in recipe order."""
        missing = [c.name for c in self.components if not prefixes.get(c.name)]
        unknown = sorted(set(prefixes) - {c.name for c in self.components})
        if missing or unknown:
            raise BlendError(
                f"blend {self.name!r} needs a .bin/.idx prefix for each of "
                f"{', '.join(c.name for c in self.components)}"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; not part of this blend: {', '.join(unknown)}" if unknown else ""))
        out: list = []
        for name, w in self.weights.items():
            out += [w, str(prefixes[name])]
        return out


BLENDS: dict[str, BlendRecipe] = {
    r.name: r
    for r in (
        # BioMamba paper (arXiv 2408.02600v3, abstract): "a balanced 80%/10%/10% mixture of PubMed abstracts, C4
        # and Wikipedia". The authors' data code (LeoYML/BioMamba scripts/data_preparation/
        # prepare_mix_ablation_data.py @ e61db22, the pubmed_mixed_10pct_general_10pct_wiki set their
        # run_cpt_*.sh train on) adds C4 and Wikipedia documents numbering 10% of the PubMed documents each,
        # i.e. 83.3/8.3/8.3 of the documents; we keep the paper's 80/10/10.
        BlendRecipe("biomamba", (
            BlendComponent("pubmed", 80, "PubMed abstracts (and/or PMC full text)"),
            BlendComponent("c4", 10, "general web text (C4 English)"),
            BlendComponent("wikipedia", 10, "Wikipedia"),
        ), "BioMamba continued pretraining: 80% biomedical, 20% general text to limit forgetting"),
        # the two recipes below mirror the defaults of examples/biomedlm/_pretrain.sh and
        # examples/biollm/_pretrain.sh (change both together)
        BlendRecipe("biomedlm", (
            BlendComponent("pubmed_abstracts", 0.18, "PubMed abstracts"),
            BlendComponent("pmc_fulltext", 0.82, "PubMed Central full text"),
        ), "BioMedLM 2.7B: about the two sources' shares of The Pile's PubMed text"),
        BlendRecipe("biollm-70b", (
            BlendComponent("pubmed_abstracts", 0.3, "PubMed abstracts"),
            BlendComponent("pmc_fulltext", 0.7, "PubMed Central full text"),
        ), "70B continued pretraining on PubMed abstracts and PMC full text"),
        # BioLLM-70B's corpus as the project's issue 19 names it (PubMed, PMC, ClinicalTrials.gov, de-identified
        # EHR, patents); no proportions are published, so the weights are our choice: the literature keeps 70%
        # split 0.3:0.7 as in "biollm-70b" above; the three new sources get the rest in about the order of their
        # size (USPTO biomedical CPC subset > MIMIC-IV-Note's ~2.6M notes > ClinicalTrials.gov's ~0.5M studies,
        # each a few billion tokens or less), so that at the launcher's ~21B tokens (10,000 steps x 2.1M) the small
        # sources are repeated at most about 4 epochs, what Muennighoff et al. 2023 ("Scaling Data-Constrained
        # Language Models", arXiv 2305.16264) found nearly as good as new data. Mirrored by BLEND=biollm-70b-corpus
        # in examples/biollm/_pretrain.sh (change both together).
        BlendRecipe("biollm-70b-corpus", (
            BlendComponent("pubmed_abstracts", 0.21, "PubMed abstracts (tools/pubmed_to_jsonl.py --format medline)"),
            BlendComponent("pmc_fulltext", 0.49, "PubMed Central full text (--format pmc)"),
            BlendComponent("clinical_trials", 0.05, "ClinicalTrials.gov study records (--format ctgov)"),
            BlendComponent("patents", 0.15, "USPTO full-text patents, biomedical CPC/IPC subset (--format uspto)"),
            BlendComponent("clinical_notes", 0.10, "de-identified clinical notes, MIMIC-IV-Note layout "
                                                   "(--format clinical_notes)"),
        ), "BioLLM-70B pretraining corpus: PubMed, PMC, ClinicalTrials.gov, patents and de-identified EHR notes"),
        BlendRecipe("pubmed", (BlendComponent("pubmed", 1, "PubMed abstracts"),),
                    "a single biomedical corpus"),
    )
}


def get_blend(name: str) -> BlendRecipe:
    if name not in BLENDS:
        raise BlendError(f"unknown blend {name!r}; known: {', '.join(sorted(BLENDS))}")
    return BLENDS[name]


def parse_blend_spec(spec: str) -> list:
    """``"biomamba:pubmed=/d/pm_text_document,c4=/d/c4_text_document,wikipedia=/d/wiki"`` ->
    Megatron-LM's weighted prefix list."""
    name, sep, rest = spec.partition(":")
    recipe = get_blend(name.strip())
    if not sep or not rest.strip():
        raise BlendError(f"blend spec {spec!r}: write {recipe.name}:"
                         + ",".join(f"{c.name}=PREFIX" for c in recipe.components))
    prefixes = {}
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise BlendError(f"blend spec {spec!r}: {item!r} is not component=prefix")
        prefixes[key.strip()] = value.strip()
    return recipe.resolve(prefixes)
