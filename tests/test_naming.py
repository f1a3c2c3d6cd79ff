"""Naming: platform filenames -> safe, unique, stable directory entries. Pure, no FUSE or HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from mmfs.tree.naming import NAME_MAX, assign_names, safe_name, split_ext, with_suffix


@dataclass(frozen=True)
class Rec:
    file_id: str
    filename: str | None
    created_at: int | None


def test_slash_nul_and_controls_are_replaced_visibly():
    assert safe_name("drafts/notes.txt", "1") == "drafts\uff0fnotes.txt"
    assert safe_name("a\x00b", "1") == "a\u2400b"
    assert safe_name("tab\there", "1") == "tab\u2409here"


def test_dot_names_and_empty_are_renamed():
    assert safe_name(".", "7") == "\uff0e"
    assert safe_name("..", "7") == "\uff0e\uff0e"
    assert safe_name("", "7") == "unnamed-7"
    assert safe_name(None, "7") == "unnamed-7"


def test_long_names_keep_their_extension():
    name = safe_name("é" * 300 + ".mp4", "1")
    assert name.endswith(".mp4")
    assert len(name.encode()) <= NAME_MAX
    name.encode()  # never a broken character


def test_oldest_keeps_plain_name_others_get_their_id():
    files = [Rec("300", "a.wav", 30), Rec("100", "a.wav", 10), Rec("200", "a.wav", 20)]
    names = assign_names(files)
    assert names["a.wav"].file_id == "100"
    assert names["a~200.wav"].file_id == "200"
    assert names["a~300.wav"].file_id == "300"


def test_assignment_does_not_depend_on_order():
    files = [Rec(str(i), "same.txt", i % 3) for i in range(1, 8)]
    assert assign_names(files) == assign_names(list(reversed(files)))


def test_a_real_name_that_looks_like_a_suffix_still_gets_a_unique_name():
    files = [Rec("1", "a.txt", 1), Rec("2", "a.txt", 2), Rec("3", "a~2.txt", 0)]
    names = assign_names(files)
    assert len(names) == 3
    assert {r.file_id for r in names.values()} == {"1", "2", "3"}


def test_reserved_names_are_never_handed_out():
    names = assign_names([Rec("5", ".by-id", 1)], reserved={".by-id"})
    assert ".by-id" not in names
    assert len(names) == 1


def test_split_ext():
    assert split_ext("movie.mp4") == ("movie", ".mp4")
    assert split_ext(".bashrc") == (".bashrc", "")
    assert split_ext("noext") == ("noext", "")
    assert split_ext("a sentence. with a dot") == ("a sentence. with a dot", "")


def test_with_suffix_stays_within_name_max():
    long = "x" * 250 + ".wav"
    out = with_suffix(long, "361721749176519")
    assert len(out.encode()) <= NAME_MAX
    assert out.endswith("~361721749176519.wav")


# Any code point, lone surrogates and bidi controls included: JSON can carry them all.
names_text = st.one_of(st.none(), st.text(st.characters(exclude_categories=()), max_size=400),
                       st.sampled_from([".", "..", "", "/", "a/b", "x.mp4", "\ud800", "\u202egnp.exe"]))


@given(st.lists(st.tuples(names_text, st.integers(0, 5)), max_size=30))
def test_any_set_of_files_gets_valid_unique_names(entries):
    files = [Rec(str(1000 + i), name, created) for i, (name, created) in enumerate(entries)]
    names = assign_names(files)
    assert len(names) == len(files)  # every file shown, none lost
    for name in names:
        assert name not in ("", ".", "..")
        assert "/" not in name and "\x00" not in name
        # As mfusepy hands it to the kernel: an escaped invalid byte is that byte; any other lone
        # surrogate would raise here.
        assert 0 < len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX
