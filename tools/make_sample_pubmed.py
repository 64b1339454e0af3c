#!/usr/bin/env python
"""Write the quickstart's synthetic PubMed sample: examples/data/sample_pubmed.xml.gz.

    python tools/make_sample_pubmed.py --seed 1234 --num-citations 400 \\
        --output examples/data/sample_pubmed.xml.gz

Every citation is made up here from templated sentences and word lists of our own (no real
abstracts, PMIDs from 90000001 up, which PubMed has not issued). The file follows the current
``PubmedArticleSet`` DTD closely enough for megatron_biomed.data.readers.medline, and includes the
cases the cleaning report should show: structured abstracts, citations without an abstract,
non-English citations, a retracted publication, a retraction notice, an exact duplicate and a
too-short abstract. The same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import random
from pathlib import Path

from lxml import etree

FIRST_PMID = 90_000_001

DISEASES = [
    "type 2 diabetes", "chronic kidney disease", "heart failure", "asthma", "rheumatoid arthritis",
    "major depressive disorder", "sepsis", "tuberculosis", "hepatocellular carcinoma", "psoriasis",
    "atrial fibrillation", "multiple sclerosis", "chronic obstructive pulmonary disease",
    "colorectal cancer", "osteoporosis", "migraine", "Parkinson disease", "malaria",
    "acute myeloid leukemia", "inflammatory bowel disease", "gestational hypertension",
]
INTERVENTIONS = [
    "metformin", "a low-sodium diet", "supervised exercise training", "inhaled corticosteroids",
    "an anti-TNF antibody", "cognitive behavioural therapy", "early goal-directed fluid therapy",
    "a four-drug regimen", "stereotactic radiotherapy", "a topical vitamin D analogue",
    "catheter ablation", "an oral kinase inhibitor", "pulmonary rehabilitation",
    "a single-dose vaccine", "bisphosphonate therapy", "a nurse-led follow-up programme",
]
MEASURES = [
    "glycated haemoglobin", "estimated glomerular filtration rate", "left ventricular ejection fraction",
    "forced expiratory volume", "disease activity score", "depressive symptom score",
    "28-day mortality", "sputum conversion", "progression-free survival", "lesion area",
    "recurrence of arrhythmia", "annualised relapse rate", "bone mineral density",
    "headache days per month", "serum interleukin-6", "length of hospital stay",
]
POPULATIONS = [
    "adults over 65 years", "children aged 6 to 12 years", "pregnant women", "outpatients",
    "patients admitted to intensive care", "primary care patients", "rural community members",
    "kidney transplant recipients", "newly diagnosed patients", "health care workers",
]
DESIGNS = [
    "a randomised controlled trial", "a prospective cohort study", "a retrospective cohort study",
    "a cross-sectional survey", "a case-control study", "a multicentre observational study",
    "a systematic review and meta-analysis", "a pilot feasibility study",
]
GENES = ["TP53", "BRCA1", "EGFR", "APOE", "IL6", "TNF", "HLA-B", "CFTR", "KRAS", "MTHFR", "VEGFA", "ACE2"]
MODELS = ["mouse", "zebrafish", "rat", "human organoid", "primary fibroblast", "induced pluripotent stem cell"]
JOURNALS = [
    "Journal of Synthetic Clinical Research", "Annals of Imaginary Medicine",
    "Proceedings in Placeholder Biology", "Example Reports in Epidemiology",
    "Fictional Review of Pharmacology", "Sample Journal of Molecular Pathology",
]
MESH = [
    "Humans", "Female", "Male", "Adult", "Aged", "Child", "Animals", "Mice", "Risk Factors",
    "Treatment Outcome", "Prospective Studies", "Retrospective Studies", "Cohort Studies",
    "Biomarkers", "Quality of Life", "Prognosis", "Gene Expression", "Mutation",
]

TITLE_TEMPLATES = [
    "Effect of {intervention} on {measure} in {population} with {disease}",
    "{design_cap} of {intervention} for {disease}",
    "Association between {gene} variants and {disease} in {population}",
    "{measure_cap} as a predictor of outcome in {disease}",
    "Loss of {gene} alters disease course in a {model} model of {disease}",
    "Long-term outcomes of {intervention} among {population}",
]
BACKGROUND = [
    "{disease_cap} remains a leading cause of morbidity among {population}.",
    "The role of {gene} in {disease} is incompletely understood.",
    "Whether {intervention} improves {measure} in {disease} is uncertain.",
    "Few studies have examined {measure} in {population} with {disease}.",
]
METHODS = [
    "We conducted {design} of {n} {population} with {disease}.",
    "Participants were assigned to {intervention} or usual care and followed for {months} months.",
    "The primary outcome was {measure}; secondary outcomes included {measure2}.",
    "We used a {model} model in which {gene} was deleted and measured {measure}.",
    "Data were analysed with mixed-effects regression adjusted for age and sex.",
]
RESULTS = [
    "{intervention_cap} reduced {measure} by {pct}% compared with control (p = 0.0{p}).",
    "{measure_cap} improved in {pct}% of participants after {months} months.",
    "Carriers of the {gene} variant had a {ratio}-fold higher risk of {disease}.",
    "No significant difference in {measure2} was observed between groups.",
    "Adverse events occurred in {pct2}% of participants and were mostly mild.",
]
CONCLUSIONS = [
    "{intervention_cap} may be a useful option for {population} with {disease}.",
    "These findings support further trials of {intervention} in {disease}.",
    "{gene} is a candidate target for future work on {disease}.",
    "{measure_cap} should be monitored routinely in {population}.",
]
# A couple of citations in other languages, also written here.
FRENCH = [
    "Cette étude décrit {n} patients atteints de {disease} suivis pendant {months} mois.",
    "Le traitement a été bien toléré et la qualité de vie s'est améliorée.",
    "Les résultats suggèrent un bénéfice clinique modeste mais constant.",
]
GERMAN = [
    "Diese Studie untersucht {n} Patienten mit {disease} über {months} Monate.",
    "Die Behandlung wurde gut vertragen und die Lebensqualität verbesserte sich.",
    "Die Ergebnisse sprechen für einen moderaten klinischen Nutzen.",
]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _slots(rng: random.Random) -> dict:
    s = {
        "disease": rng.choice(DISEASES),
        "intervention": rng.choice(INTERVENTIONS),
        "measure": rng.choice(MEASURES),
        "measure2": rng.choice(MEASURES),
        "population": rng.choice(POPULATIONS),
        "design": rng.choice(DESIGNS),
        "gene": rng.choice(GENES),
        "model": rng.choice(MODELS),
        "n": rng.randint(24, 2400),
        "months": rng.choice([3, 6, 12, 18, 24, 36]),
        "pct": rng.randint(5, 60),
        "pct2": rng.randint(2, 30),
        "p": rng.randint(1, 4),
        "ratio": round(rng.uniform(1.2, 3.5), 1),
    }
    for key in ("disease", "intervention", "measure", "design"):
        s[f"{key}_cap"] = _cap(s[key])
    return s


def _sentences(rng: random.Random, pool: list[str], k: int, slots: dict) -> str:
    return " ".join(t.format(**slots) for t in rng.sample(pool, k=min(k, len(pool))))


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrib: str) -> etree._Element:
    el = etree.SubElement(parent, tag, **attrib)
    if text is not None:
        el.text = text
    return el


def _article(rng: random.Random, pmid: int, kind: str, copy_of: dict | None) -> tuple[etree._Element, dict]:
    slots = copy_of["slots"] if copy_of else _slots(rng)
    title = copy_of["title"] if copy_of else rng.choice(TITLE_TEMPLATES).format(**slots) + "."
    pub = _sub(etree.Element("PubmedArticle"), "MedlineCitation", Status="MEDLINE", Owner="NLM")
    _sub(pub, "PMID", str(pmid), Version="1")
    article = _sub(pub, "Article", PubModel="Print")
    journal = _sub(article, "Journal")
    issue = _sub(journal, "JournalIssue", CitedMedium="Print")
    _sub(issue, "Volume", str(rng.randint(1, 80)))
    date = _sub(issue, "PubDate")
    _sub(date, "Year", str(rng.randint(1990, 2024)))
    _sub(journal, "Title", rng.choice(JOURNALS))
    language = "eng"
    if kind == "short":
        title = f"Brief note on {slots['disease']}."
    if kind in ("french", "german"):
        language = "fre" if kind == "french" else "ger"
        title = f"[{title[:-1]}]."  # MEDLINE shows English translations of foreign titles in brackets
    _sub(article, "ArticleTitle", title)
    sections: list[tuple[str | None, str]] = []
    if copy_of:
        sections = copy_of["sections"]
    elif kind == "structured":
        sections = [
            ("BACKGROUND", _sentences(rng, BACKGROUND, 2, slots)),
            ("METHODS", _sentences(rng, METHODS, 3, slots)),
            ("RESULTS", _sentences(rng, RESULTS, 3, slots)),
            ("CONCLUSIONS", _sentences(rng, CONCLUSIONS, 1, slots)),
        ]
    elif kind == "french":
        sections = [(None, _sentences(rng, FRENCH, 3, slots))]
    elif kind == "german":
        sections = [(None, _sentences(rng, GERMAN, 3, slots))]
    elif kind == "short":
        sections = [(None, "Preliminary observations are reported.")]
    elif kind in ("plain", "retracted", "retraction_notice"):
        parts = [
            _sentences(rng, BACKGROUND, 1, slots),
            _sentences(rng, METHODS, rng.randint(2, 3), slots),
            _sentences(rng, RESULTS, rng.randint(2, 3), slots),
            _sentences(rng, CONCLUSIONS, 1, slots),
        ]
        sections = [(None, " ".join(parts))]
    if sections:
        abstract = _sub(article, "Abstract")
        for label, text in sections:
            attrib = {"Label": label, "NlmCategory": label} if label else {}
            _sub(abstract, "AbstractText", text, **attrib)
    _sub(article, "Language", language)
    types = _sub(article, "PublicationTypeList")
    _sub(types, "PublicationType", "Journal Article", UI="D016428")
    if kind == "retracted":
        _sub(types, "PublicationType", "Retracted Publication", UI="D016441")
    if kind == "retraction_notice":
        _sub(types, "PublicationType", "Retraction of Publication", UI="D016440")
    if kind == "letter":
        _sub(types, "PublicationType", "Letter", UI="D016422")
    mesh = _sub(pub, "MeshHeadingList")
    for term in sorted(rng.sample(MESH, k=rng.randint(2, 5))):
        _sub(_sub(mesh, "MeshHeading"), "DescriptorName", term, MajorTopicYN="N")
    wrapper = pub.getparent()
    data = _sub(wrapper, "PubmedData")
    ids = _sub(data, "ArticleIdList")
    _sub(ids, "ArticleId", str(pmid), IdType="pubmed")
    return wrapper, {"slots": slots, "title": title, "sections": sections}


def plan(num_citations: int, rng: random.Random) -> list[str]:
    """Kind of each citation: mostly plain abstracts plus the cases the filters should catch."""
    special = (["structured"] * max(4, num_citations // 20) + ["letter"] * 5 + ["french", "german"]
               + ["retracted", "retraction_notice", "duplicate", "short"])
    if num_citations < len(special) + 1:
        raise ValueError(f"--num-citations must be at least {len(special) + 1}, got {num_citations}")
    kinds = special + ["plain"] * (num_citations - len(special))
    rng.shuffle(kinds)
    # the duplicate must come after something to copy
    if kinds[0] == "duplicate":
        kinds[0], kinds[-1] = kinds[-1], kinds[0]
    return kinds


def build(num_citations: int, seed: int) -> bytes:
    rng = random.Random(seed)
    root = etree.Element("PubmedArticleSet")
    previous = None
    for i, kind in enumerate(plan(num_citations, rng)):
        copy_of = previous if kind == "duplicate" else None
        el, info = _article(rng, FIRST_PMID + i, "plain" if kind == "duplicate" else kind, copy_of)
        root.append(el)
        if kind == "plain":
            previous = info
    body = etree.tostring(root, encoding="UTF-8", xml_declaration=False, pretty_print=True)
    header = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b"<!-- Synthetic citations generated by tools/make_sample_pubmed.py; not real PubMed data. -->\n"
        b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2024//EN" '
        b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_240101.dtd">\n'
    )
    return header + body


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", type=Path, default=Path("examples/data/sample_pubmed.xml.gz"))
    p.add_argument("--num-citations", type=int, default=400)
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args(argv)
    xml = build(args.num_citations, args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(xml)  # mtime=0 and no file name: the same seed gives the same bytes
    print(f"wrote {args.num_citations} synthetic citations to {args.output} ({args.output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
