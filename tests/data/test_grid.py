import pytest

from data import grid
from data.manifest import Utterance, read_manifest


@pytest.mark.parametrize(
    ("name", "sentence"),
    [
        ("bbaf2n", "bin blue at f two now"),
        ("lwbz9a", "lay white by z nine again"),
        ("sgiyzp", "set green in y zero please"),
        ("prwa1s", "place red with a one soon"),
    ],
)
def test_sentence_from_clip_name(name, sentence):
    assert grid.sentence_from_clip_name(name) == sentence


@pytest.mark.parametrize("name", ["bbaf2", "xbaf2n", "bbaw2n", "bbaf2x"])
def test_bad_clip_names_are_refused(name):
    with pytest.raises(ValueError, match=name):
        grid.sentence_from_clip_name(name)


def test_vocabulary_has_the_51_grammar_words():
    assert len(grid.VOCABULARY) == 51 and "w" not in grid.LETTERS


def test_read_alignment_drops_silence_and_converts_units(tmp_path):
    path = tmp_path / "bbaf2n.align"
    path.write_text("0 17750 sil\n17750 22500 bin\n22500 23000 sp\n23000 25000 blue\n")
    assert grid.read_alignment(path) == [(0.71, 0.9, "bin"), (0.92, 1.0, "blue")]


def test_read_alignment_names_file_and_line(tmp_path):
    path = tmp_path / "bad.align"
    path.write_text("0 100 sil\n100 bin\n")
    with pytest.raises(ValueError, match=r"bad.align:2"):
        grid.read_alignment(path)


def test_grid_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(grid.GRID_DIR_ENV, str(tmp_path))
    assert grid.grid_dir() == tmp_path
    monkeypatch.setenv(grid.GRID_DIR_ENV, str(tmp_path / "absent"))
    assert grid.grid_dir() is None


def _utterances(speaker, count):
    return [
        Utterance(grid.DEFAULT_GRID_DIR / f"{speaker}_{index:03}.mp4", "", {"speaker": speaker})
        for index in range(count)
    ]


def test_dev_split_is_random_deterministic_and_keeps_speakers_apart():
    own, other = _utterances("s1", 300), _utterances("s4", 10)
    train, dev = grid.dev_split(own + other)
    assert len(dev) == 100 and len(train) == 200
    assert not {item.video for item in train} & {item.video for item in dev}
    assert all(item.fields["speaker"] == "s1" for item in train + dev)
    assert dev != own[:100] and dev != own[-100:]  # drawn, not the first or last names
    shuffled = other + own[::-1]
    train_again, dev_again = grid.dev_split(shuffled)  # the same draw whatever the order
    assert {item.video for item in dev_again} == {item.video for item in dev}
    assert grid.dev_split(own, seed=1)[1] != dev


def test_dev_split_needs_enough_clips_and_speakers():
    with pytest.raises(ValueError, match="only 50"):
        grid.dev_split(_utterances("s1", 50))
    with pytest.raises(ValueError, match="speaker"):
        grid.dev_split([Utterance(grid.DEFAULT_GRID_DIR / "a.mp4", "")])


def test_real_manifest(grid_dir):
    utterances = read_manifest(grid_dir / grid.MANIFEST_NAME)
    for item in utterances:
        assert grid.sentence_from_clip_name(item.fields["clip"]) == item.transcript
    train, dev = grid.dev_split(utterances)
    assert (len(train), len(dev)) == (800, 100)
    assert grid.dev_split(utterances) == (train, dev)
    assert not {item.video for item in train} & {item.video for item in dev}
    assert all(item.fields["speaker"] == "s1" for item in train + dev)


def test_real_alignment_matches_the_transcript(grid_dir):
    item = read_manifest(grid_dir / grid.MANIFEST_NAME)[0]
    path = grid.alignment_path(item.video)
    assert path == grid_dir / "s1" / "align" / f"{item.fields['clip']}.align"
    words = grid.read_alignment(path)
    assert " ".join(word.word for word in words) == item.transcript
    assert all(0 <= word.start < word.end <= 3.0 for word in words)
