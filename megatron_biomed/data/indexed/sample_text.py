"""Synthetic PubMed-style abstracts, written for this project, to train the bundled Punkt model
and to give tests text without depending on downloaded data.

The sentences are generated from templates with the abbreviations that break generic English
sentence splitters (``et al.``, ``i.v.``, ``approx.``, ``e.g.``, ``vs.``, ``Fig.``, ``b.i.d.`` ...)
used the way abstracts use them: mid-sentence, before lower-case words, numbers and citations.
"""

from __future__ import annotations

import random

DRUGS = ["clonidine", "naloxone", "metformin", "cisplatin", "warfarin", "propranolol", "lidocaine",
         "doxorubicin", "heparin", "amiodarone", "tacrolimus", "gentamicin", "ketamine", "insulin",
         "dexamethasone", "rituximab", "atorvastatin", "furosemide", "vancomycin", "morphine"]
CONDITIONS = ["hypertension", "sepsis", "type 2 diabetes", "acute kidney injury", "atrial fibrillation",
              "breast cancer", "neuropathic pain", "asthma", "heart failure", "hepatotoxicity",
              "rheumatoid arthritis", "ischemic stroke", "chronic obstructive pulmonary disease"]
SUBJECTS = ["patients", "rats", "mice", "healthy volunteers", "children", "elderly adults",
            "participants", "dogs", "rabbits", "outpatients"]
GENES = ["TP53", "BRCA1", "EGFR", "KRAS", "IL-6", "TNF-alpha", "CYP3A4", "HER2", "VEGF", "APOE"]
AUTHORS = ["Smith", "Chen", "Garcia", "Nakamura", "Okafor", "Jensen", "Kowalski", "Rossi", "Patel"]
ROUTES = ["i.v.", "i.p.", "s.c.", "p.o.", "i.m."]
DOSING = ["b.i.d.", "t.i.d.", "q.d."]

_TEMPLATES = [
    "{Subj} received {drug} {dose} mg/kg {route} for {n} days.",
    "As reported by {author} et al. in {year}, {drug} reduced the incidence of {cond}.",
    "Previous work ({author} et al., {year}) showed that {gene} expression was increased in {cond}.",
    "The mean age was approx. {n} years and {pct}% were women.",
    "A total of approx. {big} {subj} were screened, and {n} were enrolled.",
    "{Drug} was given {dose} mg {dosing} vs. placebo in {subj} with {cond}.",
    "Plasma levels of {gene} (Fig. {fig}) were higher after {drug} than after {drug2}.",
    "Several agents, e.g. {drug} and {drug2}, have been tested in {cond}.",
    "Adverse events, i.e. nausea and dizziness, occurred in {pct}% of {subj}.",
    "{Author} et al. found no effect of {drug} on {cond} in {subj}.",
    "Dose-response curves (Fig. {fig}A) were fitted by nonlinear regression.",
    "Blood samples were drawn {n} min after the {route} injection of {drug}.",
    "The response to {drug} {dose} mg {route} was compared with that of {drug2} (approx. {n} mg).",
    "In contrast to {author} et al., we observed a decrease of {gene} in {subj}.",
    "These findings suggest that {gene} is a target for the treatment of {cond}.",
    "Results are expressed as mean +/- S.D. of {n} experiments.",
    "Dr. {author} and colleagues measured {gene} levels in {subj} with {cond}.",
    "The odds ratio was {ratio} (95% CI {lo}-{hi}; p < 0.05) for {cond}.",
    "{Subj} were randomized to {drug} or {drug2} (n = {n} per group).",
    "Treatment with {drug} at approx. {dose} mg/kg {route} prevented {cond} in {subj}.",
    "See Table {fig} and Fig. {fig}B for details on {gene} variants.",
    "Compared with controls, {subj} given {drug} {dosing} had lower rates of {cond}.",
    "Data were analysed as described by {author} et al. with minor changes.",
    "We conclude that {drug} is safe in {subj} with {cond}.",
]


def _fill(template: str, rng: random.Random) -> str:
    drug, drug2 = rng.sample(DRUGS, 2)
    subj = rng.choice(SUBJECTS)
    author = rng.choice(AUTHORS)
    lo = round(rng.uniform(0.2, 1.5), 2)
    values = {
        "drug": drug, "Drug": drug.capitalize(), "drug2": drug2, "subj": subj,
        "Subj": subj[0].upper() + subj[1:], "cond": rng.choice(CONDITIONS), "gene": rng.choice(GENES),
        "author": author, "Author": author, "route": rng.choice(ROUTES), "dosing": rng.choice(DOSING),
        "dose": rng.choice([0.5, 1, 2, 5, 10, 20, 50, 100]), "n": rng.randint(2, 90),
        "big": rng.randint(100, 5000), "pct": rng.randint(5, 95), "year": rng.randint(1985, 2023),
        "fig": rng.randint(1, 6), "ratio": round(lo + 0.3, 2), "lo": lo, "hi": round(lo + 0.9, 2),
    }
    return template.format(**values)


def synthetic_abstracts(n: int, seed: int = 0, sentences: tuple[int, int] = (4, 9)) -> list[str]:
    """``n`` abstracts of 4-9 generated sentences each, deterministic in ``seed``."""
    rng = random.Random(seed)
    return [" ".join(_fill(rng.choice(_TEMPLATES), rng)
                     for _ in range(rng.randint(*sentences))) for _ in range(n)]
