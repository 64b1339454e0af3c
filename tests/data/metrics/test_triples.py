"""BioGPT's target sentences, their parser, and triple P/R/F1 on fixed generations (microsoft/BioGPT
examples/RE-* @ 648f7d6), against scikit-learn where a library defines the same number."""

from __future__ import annotations

import pytest
from sklearn.metrics import precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer

from megatron_biomed.data.metrics.triples import (
    abbreviation,
    hard_match_prf,
    ids_of,
    micro_prf,
    normalize_name,
    without_abbreviation,
)
from megatron_biomed.data.tasks.records import RelationDocument, RelationTriple
from megatron_biomed.data.tasks.relation_text import TEMPLATES, parse_triples, source_text, target_sentence

CDR, DTI, DDI = TEMPLATES["bc5cdr_re"], TEMPLATES["kd_dti_re"], TEMPLATES["ddi_re"]


def test_targets_are_biogpts_relis_sentences():
    doc = RelationDocument("1", "Lithium toxicity.", "Text.", (
        RelationTriple("lithium carbonate", "CID", "cyanosis", "D1", "D2"),
        RelationTriple("", "CID", "choreoathetosis", "D3", "D4"),  # no chemical name: not writable
        RelationTriple("lithium", "CID", "cardiac arrhythmia", "D5", "D6"),
    ))  # fmt: skip
    assert target_sentence(doc, CDR) == ("the relation between lithium carbonate and cyanosis exists; "
                                         "the relation between lithium and cardiac arrhythmia exists.")  # fmt: skip
    assert source_text(doc, CDR) == "lithium toxicity. text."  # title ends with "." -> joined by a space
    assert source_text(RelationDocument("2", "No stop", "Abs", ()), CDR) == "no stop. abs"
    ddi = RelationDocument("d1", "", " Aspirin and Warfarin.\nwarfarin with MAO inhibitor. ", (
        RelationTriple("MAO inhibitor", "Effect", "warfarin"),
        RelationTriple("warfarin", "advise", "MAO inhibitor"),
        RelationTriple("Aspirin", "mechanism", "warfarin"),
    ))  # fmt: skip
    assert source_text(ddi, DDI) == "aspirin and warfarin. warfarin with mao inhibitor."
    # sort_triples: str.find of the name as given in the lower-cased text: "Aspirin"/"MAO inhibitor" -> -1 (first,
    # stable), "warfarin" found later
    assert target_sentence(ddi, DDI) == ("the interaction between mao inhibitor and warfarin is effect; "
                                         "the interaction between aspirin and warfarin is mechanism; "
                                         "the interaction between warfarin and mao inhibitor is advise.")  # fmt: skip
    assert target_sentence(RelationDocument("3", "", "x", ()), DDI) == ""


def test_parse_inverts_the_template_and_follows_biogpts_rules():
    triples = (RelationTriple("a b", "inhibitor", "c"), RelationTriple("d", "agonist", "e"))
    doc = RelationDocument("1", "t", "a", triples)
    assert parse_triples(target_sentence(doc, DTI), DTI) == [("a b", "inhibitor", "c"), ("d", "agonist", "e")]
    # prompt tokens and "we have that" prefixes are cut; greedy groups: "x and y and z" -> head "x and y"
    assert parse_triples("learned1 learned2 the relation between x and y and z exists.", CDR) == [
        ("x and y", "CID", "z")]
    assert parse_triples("we have that the interaction between p and q is r", DDI) == [("p", "r", "q")]
    # BC5CDR splits at ";" and strips the pieces; KD-DTI/DDI split at "; " only
    assert parse_triples("the relation between a and b exists;the relation between c and d exists", CDR) == [
        ("a", "CID", "b"), ("c", "CID", "d")]
    assert parse_triples("the interaction between a and b is c;the interaction between d and e is f", DDI) == [
        ("a and b is c;the interaction between d", "f", "e")]  # one piece, greedy groups, as their regex reads it
    # empty, malformed, partial: only matching pieces count; duplicates are kept by the parser
    assert parse_triples("", CDR) == [] and parse_triples("   ", DDI) == []
    assert parse_triples("the relation between a exists", CDR) == []
    assert parse_triples("the relation between a and b exists; blah; the relation between a and b exists.", CDR) == [
        ("a", "CID", "b"), ("a", "CID", "b")]


def _sklearn_micro(pred, gold):
    mlb = MultiLabelBinarizer().fit([*pred, *gold, [("dummy",)]])
    p, r, f, _ = precision_recall_fscore_support(mlb.transform(gold), mlb.transform(pred), average="micro",
                                                 zero_division=0)  # fmt: skip
    return f, p, r


@pytest.mark.parametrize("pred, gold", [
    ([{("c1", "d1"), ("c2", "d2")}, {("c3", "d3")}], [{("c1", "d1")}, {("c3", "d3"), ("c4", "d4")}]),
    ([set(), {("-1", "d3")}], [{("c1", "d1")}, {("c3", "d3")}]),  # empty generation, unknown name
    ([{("c9", "d9")}, set()], [set(), set()]),  # triples absent from gold; a document without gold
    ([set(), set()], [{("c1", "d1")}, set()]),  # nothing predicted: 0, not NaN
])  # fmt: skip
def test_micro_prf_equals_sklearn_micro_average(pred, gold):
    ours = micro_prf(pred, gold)
    assert [s.metric for s in ours] == ["f1", "precision", "recall"]
    assert [s.value for s in ours] == pytest.approx(_sklearn_micro(pred, gold))


def test_cid_names_map_to_ids_duplicates_count_once():
    heads, tails = {"lithium": "D1", "lithium carbonate": "D1"}, {"cyanosis": "D2"}
    parsed = parse_triples("the relation between lithium and cyanosis exists; the relation between "
                           "lithium carbonate and cyanosis exists; the relation between x and cyanosis exists", CDR)
    pred = ids_of(parsed, heads, tails)
    assert pred == {("D1", "D2"), ("-1", "D2")}
    f1, p, r = (s.value for s in micro_prf([pred], [{("D1", "D2")}]))
    assert (p, r) == (0.5, 1.0) and f1 == pytest.approx(2 / 3)


def test_name_normalisation_is_theirs():
    assert normalize_name("il-2") == "ilII" and normalize_name("type 12") == "type12"  # digit after digit kept
    assert normalize_name("p-type channel") == "pchannel"
    assert without_abbreviation("tumor necrosis factor (tnf)") == "tumornecrosisfactor"
    assert abbreviation("tumor necrosis factor (tnf)") == "tnf" and abbreviation("aspirin") == "aspirin"


def test_hard_match_sample_average():
    gold = [[("Aspirin", "effect", "Warfarin")], [("a", "int", "b"), ("c", "int", "d")], [("x (xx)", "r", "y")], []]
    pred = [
        [(" ASPIRIN ", "Effect", "war farin"), ("aspirin", "effect", "warfarin")],  # case/space; duplicate
        [("a", "int", "b"), ("e", "int", "f")],  # one right, one absent from gold
        [("xx", "r", "y")],  # the abbreviation matches
        [],  # empty generation, empty gold: 1
    ]
    f1, p, r = hard_match_prf(pred, gold)
    assert p.per_item == (1.0, 0.5, 1.0, 1.0) and r.per_item == (1.0, 0.5, 1.0, 1.0)
    assert f1.value == pytest.approx(3.5 / 4) and p.value == pytest.approx(3.5 / 4)
    f1, p, r = hard_match_prf([[]], [[("a", "r", "b")]])  # empty generation against gold: 0 everywhere
    assert (f1.value, p.value, r.value) == (0.0, 0.0, 0.0)


def test_hard_match_equals_sklearn_samples_average_on_plain_names():
    gold = [[("a", "r", "b"), ("c", "r", "d")], [("e", "s", "f")], [("g", "r", "h"), ("i", "r", "j")]]
    pred = [[("a", "r", "b")], [("e", "s", "f"), ("k", "s", "l")], [("z", "r", "z")]]
    mlb = MultiLabelBinarizer().fit(pred + gold)
    p, r, f, _ = precision_recall_fscore_support(mlb.transform(gold), mlb.transform(pred), average="samples",
                                                 zero_division=0)  # fmt: skip
    ours = hard_match_prf(pred, gold)
    assert [s.value for s in ours] == pytest.approx([f, p, r])
