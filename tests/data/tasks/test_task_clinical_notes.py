"""The reader for MIMIC-IV-Note's discharge.csv layout (errors naming file and line, --skip-bad counts), and
what BioMamba's clinical evaluation does with the notes (LeoYML/BioMamba ft_biomamba/mimic_data.py @ e61db22):
the section split, the patient-level hold-out and the note sample."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from megatron_biomed.data.tasks import DISCHARGE_COLUMNS, ReadReport, TaskDataError, read_task_file
from megatron_biomed.data.tasks.clinical_notes import (
    admission_and_discharge,
    heldout_patients,
    note_sections,
    read_discharge_notes,
    sample_notes,
)

LONG = "x" * 200
NOTE = ("Name: ___ Unit No: ___\n \nChief Complaint:\nchest pain\n \nHistory of Present Illness:\n"
        "Patient with pain.\nPhysical Exam:\nNAD\nBrief Hospital Course:\nTreated.\nDischarge Diagnosis:\n"
        "Angina\n \nFollowup Instructions:\n___\n")  # fmt: skip


def csv_text(rows: list[list[str]], header=DISCHARGE_COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def row(note_id: str, subject: str, text: str) -> list[str]:
    return [note_id, subject, "20000001", "DS", "1", "2180-05-06 00:00:00", "2180-05-07 10:00:00", text]


def test_reads_the_layout_with_multiline_text_and_gzip(write):
    text = csv_text([row("1-DS-1", "1", NOTE + LONG), row("2-DS-1", "2", "short")])
    for name in ("discharge.csv", "discharge.csv.gz"):
        report = ReadReport(name)
        notes = read_task_file(write(name, text), "mimic_discharge", report=report)
        assert [n.note_id for n in notes] == ["1-DS-1"] and notes[0].text == NOTE + LONG
        assert (notes[0].subject_id, notes[0].charttime) == ("1", "2180-05-06 00:00:00")
        assert report.read == 1 and report.skipped == {"note under 200 characters": 1}  # dropped, not an error
    # other columns, in another order, are fine
    header = ("extra",) + tuple(reversed(DISCHARGE_COLUMNS))
    notes = read_discharge_notes(write("r.csv", csv_text([["e"] + row("3-DS-1", "3", LONG)[::-1]], header)))
    assert notes[0].note_id == "3-DS-1" and notes[0].text == LONG


def test_bad_rows_name_file_and_line_or_are_counted(write):
    rows = [row("1-DS-1", "1", NOTE + LONG), row("2-DS-1", "2", LONG)[:5], row("3-DS-1", "", LONG),
            row("4-DS-1", "4", LONG)]  # fmt: skip
    path = write("d.csv", csv_text(rows))
    second = 1 + (NOTE + LONG).count("\n") + 2  # header, the multi-line first record, then the short one
    with pytest.raises(TaskDataError) as err:
        read_discharge_notes(path)
    assert str(err.value) == f"{path}:{second}: expected 8 columns as in the header, got 5"
    assert err.value.line == second and err.value.reason == "wrong number of columns"
    report = ReadReport(str(path))
    notes = read_discharge_notes(path, skip_bad=True, report=report)
    assert [n.note_id for n in notes] == ["1-DS-1", "4-DS-1"]
    assert report.skipped == {"wrong number of columns": 1, "empty subject_id": 1}
    assert report.first_errors[1] == f"{path}:{second + 1}: subject_id is empty (notes are split by patient)"


def test_file_errors_end_the_read(write):
    with pytest.raises(TaskDataError, match=r"h\.csv:1: header lacks column\(s\) storetime, text"):
        read_discharge_notes(write("h.csv", csv_text([], DISCHARGE_COLUMNS[:-2])), skip_bad=True)
    with pytest.raises(TaskDataError, match="empty file"):
        read_discharge_notes(write("e.csv", ""))
    broken = csv_text([row("1-DS-1", "1", LONG)]) + '2-DS-1,2,x,DS,1,a,b,"unclosed\n'
    with pytest.raises(TaskDataError, match=r"b\.csv:3: malformed CSV"):
        read_discharge_notes(write("b.csv", broken), skip_bad=True)


def test_section_split_is_theirs():
    """parse_note_sections: headers at a line start, any case, ':'/'-' dropped, upper-cased; the text before
    the first header is PREAMBLE. As their regex has it, MIMIC-IV's "Brief Hospital Course:" is no header (the
    line starts with "Brief"), so the course stays inside the section before it; "Followup Instructions" gives a
    FOLLOWUP section, which is not among their discharge headers ("FOLLOW UP", "FOLLOW-UP")."""
    sections = note_sections(NOTE)
    assert list(sections) == ["PREAMBLE", "CHIEF COMPLAINT", "HISTORY OF PRESENT ILLNESS", "PHYSICAL EXAM",
                              "DISCHARGE DIAGNOSIS", "FOLLOWUP"]  # fmt: skip
    assert sections["PREAMBLE"] == "Name: ___ Unit No: ___" and sections["PHYSICAL EXAM"] == "NAD\nBrief Hospital " \
        "Course:\nTreated."
    context, reference = admission_and_discharge(NOTE)
    assert context == ("PREAMBLE:\nName: ___ Unit No: ___\n\nCHIEF COMPLAINT:\nchest pain\n\n"
                       "HISTORY OF PRESENT ILLNESS:\nPatient with pain.\n\nPHYSICAL EXAM:\nNAD\nBrief Hospital "
                       "Course:\nTreated.")  # fmt: skip
    assert reference == "DISCHARGE DIAGNOSIS:\nAngina"  # FOLLOWUP is not among their discharge headers
    assert note_sections("no headers here ") == {"FULL_TEXT": "no headers here"}
    assert admission_and_discharge("Chief Complaint:\npain\n") is None


def test_patient_holdout_and_sample_are_theirs():
    """split_mimic_data: distinct subjects in order of appearance, RandomState(42).shuffle, first
    max(1, int(10%)) held out; the sample: RandomState(42).choice without replacement."""
    from megatron_biomed.data.tasks import ClinicalNote

    order = (5, 3, 9, 1, 7, 2, 8, 4, 6, 0, 11, 12)
    notes = [ClinicalNote(f"{s}-{k}", str(s), "", "DS", "1", "", "", LONG) for s in order for k in range(2)]
    subjects = np.array([str(s) for s in order])
    np.random.RandomState(42).shuffle(subjects)
    held = heldout_patients(notes)
    assert [n.note_id for n in held] == [n.note_id for n in notes if n.subject_id == subjects[0]]
    assert len(held) == 2 and heldout_patients(notes, 0.25, 1) != held
    picked = sample_notes(notes, 5)
    assert [n.note_id for n in picked] == [notes[i].note_id for i in np.random.RandomState(42).choice(24, 5, False)]
    assert sample_notes(notes, 500) == notes
