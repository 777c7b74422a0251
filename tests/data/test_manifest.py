from pathlib import Path

import pytest

from data.manifest import ManifestError, Utterance, read_manifest, write_manifest


def test_round_trip_keeps_columns_and_resolves_paths(tmp_path):
    elsewhere = tmp_path.parent / "elsewhere.mp4"
    utterances = [
        Utterance(tmp_path / "clips" / "a.mp4", "bin blue at f two now", {"speaker": "s1"}),
        Utterance(elsewhere, "set red by z zero soon", {"speaker": "s4", "clip": "srbz0s"}),
    ]
    manifest = tmp_path / "sets" / "manifest.tsv"
    write_manifest(manifest, utterances)

    lines = manifest.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "speaker\tclip\tvideo\ttranscript"
    assert lines[1].split("\t")[2] == str(tmp_path / "clips" / "a.mp4")  # outside: absolute
    assert lines[2].split("\t")[2] == str(elsewhere)

    again = read_manifest(manifest)
    assert [item.video for item in again] == [item.video for item in utterances]
    assert [item.transcript for item in again] == [item.transcript for item in utterances]
    assert again[0].fields == {"speaker": "s1", "clip": ""}
    assert again[1].fields == {"speaker": "s4", "clip": "srbz0s"}


def test_relative_paths_are_read_against_the_manifest_folder(tmp_path, monkeypatch):
    manifest = tmp_path / "data" / "list.tsv"
    manifest.parent.mkdir()
    absolute = tmp_path / "abs.mp4"
    manifest.write_text(
        f"transcript\tvideo\tnote\nhello\tsub/a.mp4\tx\nbye\t{absolute}\ty\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)  # a relative manifest path still yields absolute videos
    first, second = read_manifest(Path("data") / "list.tsv")
    assert first == Utterance(manifest.parent / "sub" / "a.mp4", "hello", {"note": "x"})
    assert second.video == absolute


def test_inside_folder_is_written_relative(tmp_path):
    manifest = tmp_path / "m.tsv"
    write_manifest(manifest, [Utterance(tmp_path / "v" / "a.mp4", "hi")])
    assert manifest.read_text(encoding="utf-8") == "video\ttranscript\nv/a.mp4\thi\n"
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed into place


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("video\tspeaker\na.mp4\ts1\n", 1, "transcript"),
        ("clip\nx\n", 1, "video, transcript"),
        ("video\ttranscript\na.mp4\thi\nb.mp4\n", 3, "found 1"),
        ("video\ttranscript\n\thi\n", 2, "empty video"),
        ("", 1, "header"),
    ],
)
def test_errors_name_file_and_line(tmp_path, text, line, words):
    manifest = tmp_path / "bad.tsv"
    manifest.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest)
    assert str(caught.value).startswith(f"{manifest}:{line}: ")
    assert words in str(caught.value)


def test_missing_manifest_is_a_manifest_error(tmp_path):
    with pytest.raises(ManifestError, match="missing.tsv"):
        read_manifest(tmp_path / "missing.tsv")


def test_cells_with_tabs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="tab or line break"):
        write_manifest(tmp_path / "m.tsv", [Utterance(tmp_path / "a.mp4", "two\twords")])
    assert not list(tmp_path.iterdir())
