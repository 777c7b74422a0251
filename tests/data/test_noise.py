"""Noise kinds, mixing at an exact SNR, reproducible seeding, and parsing `--noise` / `--snr`."""

from pathlib import Path

import numpy as np
import pytest

from data.noise import (
    BABBLE_TALKERS,
    REFERENCE_POWER,
    NoiseSpec,
    add_noise,
    babble,
    condition_rng,
    make_noise,
    mix,
    noise_conditions,
    parse_noise,
    parse_snr,
    power,
)
from preprocessing.audio import SAMPLE_RATE, decode_audio
from tests.media import tone, write_video

SNRS = (20, 5, 0, -5, -10)  # dB
CLIP = 2 * SAMPLE_RATE  # samples in a test clip


def snr_of(speech: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """The whole-clip SNR (dB) that `noisy` actually has."""
    return 10 * np.log10(power(speech) / power(noisy - speech))


def random_audio(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, round(seconds * SAMPLE_RATE)).astype(np.float32)


def tone_pool(frequencies: list[int]) -> dict[str, np.ndarray]:
    """Pure tones of whole-Hz frequencies, 0.5 s or 2 s long, at different levels, keyed `f<Hz>`.

    Every tone has whole cycles in any whole second, so it lands on one FFT bin of a 1 s babble,
    looped or cut, from any offset.
    """
    pool = {}
    for i, f in enumerate(frequencies):
        t = np.arange(SAMPLE_RATE // 2 if i % 2 else 2 * SAMPLE_RATE) / SAMPLE_RATE
        pool[f"f{f}"] = ((0.1 + 0.05 * i) * np.sin(2 * np.pi * f * t)).astype(np.float32)
    return pool


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """2 s with a 1 kHz burst from 0.5 s to 1.5 s: speech with pauses, like a real clip."""
    return tone(2.0, 0.5, 1.0)


@pytest.fixture(scope="module")
def pool() -> dict[str, np.ndarray]:
    """Babble material: 10 random utterances, one of them the clip's own (`target`)."""
    utterances = {f"u{i}": random_audio(1.0 + 0.3 * i, seed=i) for i in range(9)}
    return {"target": random_audio(2.0, seed=99), **utterances}


@pytest.fixture(scope="module")
def noise_file(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("noise") / "hum.avi", None, audio=random_audio(0.7, seed=5))


KINDS = ("white", "pink", "babble", "file")  # "file" stands for the `noise_file` fixture


@pytest.mark.parametrize("name", KINDS)
def test_mix_hits_the_requested_snr(name, speech, pool, noise_file):
    kind = noise_file if name == "file" else name
    for snr in SNRS:
        noise = make_noise(kind, CLIP, condition_rng(0, "target", snr), pool=pool, exclude="target")
        noisy = mix(speech, noise, snr)
        assert noisy.dtype == np.float32 and noisy.shape == speech.shape
        assert abs(snr_of(speech, noisy) - snr) < 0.1


def test_mix_takes_a_batch_with_one_snr_per_clip(speech):
    batch = np.stack([speech, 0.1 * speech, speech[::-1].copy()])
    noise = np.stack([make_noise("white", CLIP, condition_rng(0, i)) for i in range(3)])
    snrs = np.array([20.0, 0.0, -10.0])
    np.testing.assert_allclose(snr_of(batch, mix(batch, noise, snrs)), snrs, atol=0.1)


@pytest.mark.parametrize("snr", [20, -10])
def test_silent_speech_gets_noise_at_the_reference_level(snr):
    noise = make_noise("pink", CLIP, condition_rng(0, "silent"))
    noisy = mix(np.zeros(CLIP, np.float32), noise, snr)
    assert np.isfinite(noisy).all()
    assert abs(10 * np.log10(REFERENCE_POWER / power(noisy)) - snr) < 0.1


def test_silent_noise_is_refused(speech):
    with pytest.raises(ValueError, match="noise is silent"):
        mix(speech, np.zeros_like(speech), 5)


@pytest.mark.parametrize("name", KINDS)
def test_seeding_is_reproducible_and_per_clip(name, speech, pool, noise_file):
    spec = NoiseSpec(noise_file if name == "file" else name, 0.0)

    def noisy(seed: int, clip: str) -> np.ndarray:
        return add_noise(speech, spec, condition_rng(seed, clip, spec), pool=pool, exclude=clip)

    same = noisy(7, "u1")
    assert np.array_equal(same, noisy(7, "u1"))
    assert not np.allclose(same, noisy(8, "u1"))
    assert not np.allclose(same, noisy(7, "u2"))


def test_condition_rng_is_stable_across_processes():
    # a fixed number: Python's salted hash() would change it in every process
    assert condition_rng(1234, "bbaf2n", "babble@-5dB").integers(1 << 62) == 2274134545880447275
    assert condition_rng(1, "ab", "c").integers(1 << 62) != condition_rng(1, "a", "bc").integers(1 << 62)


def test_babble_never_contains_the_target_and_has_six_equal_talkers():
    frequencies = [300 + 100 * i for i in range(12)]
    pool = tone_pool(frequencies)
    target = "f800"
    for seed in range(20):
        spectrum = np.abs(np.fft.rfft(babble(pool, SAMPLE_RATE, condition_rng(seed), exclude=target))) ** 2
        energies = np.array([spectrum[f] for f in frequencies])  # 1 s long: bin k is k Hz
        loud = energies > 1e-6 * energies.max()
        assert spectrum[800] < 1e-6 * energies.max()
        assert loud.sum() == BABBLE_TALKERS
        np.testing.assert_allclose(energies[loud], energies[loud].mean(), rtol=1e-3)  # equal RMS


def test_babble_needs_the_target_key_and_enough_other_talkers(pool):
    with pytest.raises(ValueError, match="key of the clip to exclude"):
        make_noise("babble", CLIP, condition_rng(0), pool=pool)
    small = dict(list(pool.items())[: BABBLE_TALKERS])  # target + 5 others
    with pytest.raises(ValueError, match="needs 6 utterances besides 'target'; the pool has 5"):
        babble(small, CLIP, condition_rng(0), exclude="target")
    assert babble(small, CLIP, condition_rng(0), exclude="another clip").shape == (CLIP,)


def start_in(recording: np.ndarray, segment: np.ndarray) -> int:
    """Where `segment` begins in `recording`, read cyclically; fails unless it is found whole."""
    for start in np.flatnonzero(recording == segment[0]):
        if np.array_equal(np.take(recording, np.arange(start, start + len(segment)), mode="wrap"), segment):
            return int(start)
    raise AssertionError("segment is not a (looped) piece of the recording")


def test_a_short_noise_file_is_looped_to_full_length(tmp_path):
    path = write_video(tmp_path / "short.mkv", None, audio=random_audio(0.3, seed=1))
    recording = decode_audio(path)
    assert len(recording) < CLIP
    noise = make_noise(path, CLIP, condition_rng(0))
    assert noise.shape == (CLIP,)
    start_in(recording, noise)
    assert np.array_equal(noise[len(recording) :], noise[: -len(recording)])  # repeats, no gap


def test_a_long_noise_file_is_cut_at_a_random_offset(tmp_path):
    path = write_video(tmp_path / "long.avi", None, audio=random_audio(3.0, seed=2))
    recording = decode_audio(path)
    starts = {start_in(recording, make_noise(path, CLIP, condition_rng(seed))) for seed in range(5)}
    assert len(starts) == 5 and max(starts) <= len(recording) - CLIP  # inside the file: no wrap


def test_a_noise_folder_uses_all_its_files(tmp_path):
    for name, frequency in (("a.avi", 440), ("b.mkv", 1000)):
        write_video(tmp_path / name, None, audio=tone(1.0, 0.0, 1.0, frequency))
    (tmp_path / ".DS_Store").write_bytes(b"not media")  # hidden files are skipped
    [folder] = parse_noise(str(tmp_path))
    peaks = set()
    for seed in range(12):
        noise = make_noise(folder, SAMPLE_RATE // 2, condition_rng(seed))
        peaks.add(int(np.argmax(np.abs(np.fft.rfft(noise)))) * 2)  # 0.5 s: bin k is 2k Hz
    assert peaks == {440, 1000}


def test_an_empty_folder_or_silent_file_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no noise files"):
        make_noise(tmp_path / "empty", CLIP, condition_rng(0))
    silent = write_video(tmp_path / "silent.avi", None, audio=np.zeros(SAMPLE_RATE, np.float32))
    with pytest.raises(ValueError, match="silent or empty"):
        make_noise(silent, CLIP, condition_rng(0))


def spectral_slope(noise: np.ndarray) -> float:
    """Slope of log power vs log frequency, 100 Hz .. 6 kHz, from averaged Hann periodograms."""
    chunk = 4096
    frames = noise[: len(noise) // chunk * chunk].reshape(-1, chunk) * np.hanning(chunk)
    spectrum = (np.abs(np.fft.rfft(frames)) ** 2).mean(axis=0)
    frequencies = np.fft.rfftfreq(chunk, 1 / SAMPLE_RATE)
    edges = np.geomspace(100, 6000, 25)  # log-spaced bands, so each octave weighs the same
    band = np.digitize(frequencies, edges)
    centres = [np.log10(frequencies[band == b].mean()) for b in range(1, len(edges))]
    levels = [np.log10(spectrum[band == b].mean()) for b in range(1, len(edges))]
    return float(np.polyfit(centres, levels, 1)[0])


def test_pink_noise_power_falls_as_one_over_f():
    assert abs(spectral_slope(make_noise("pink", 8 * SAMPLE_RATE, condition_rng(0))) + 1) < 0.1
    assert abs(spectral_slope(make_noise("white", 8 * SAMPLE_RATE, condition_rng(0)))) < 0.1


def test_parse_snr():
    assert parse_snr("clean,20, -5,0.5") == (None, 20.0, -5.0, 0.5)
    errors = {"loud": "bad SNR .loud.: expected a num", "nan": "finite", "20,,5": "empty item", "": "empty"}
    for bad, message in errors.items():
        with pytest.raises(ValueError, match=message):
            parse_snr(bad)


def test_parse_noise(noise_file):
    assert parse_noise(f"white,pink,babble,{noise_file}") == ("white", "pink", "babble", noise_file)
    with pytest.raises(ValueError, match="unknown noise 'brown': expected white, pink, babble, or an exist"):
        parse_noise("white,brown")
    with pytest.raises(ValueError, match="unknown noise 'missing.wav'"):
        parse_noise("missing.wav")


def test_conditions_put_clean_first_once():
    conditions = noise_conditions(parse_noise("white,babble"), parse_snr("20,clean,-5"))
    assert [str(c) for c in conditions] == ["clean", "white@20dB", "white@-5dB", "babble@20dB", "babble@-5dB"]
    with pytest.raises(ValueError, match="both be given"):
        NoiseSpec("white", None)


def test_clean_leaves_speech_untouched(speech):
    assert add_noise(speech, NoiseSpec(None, None), condition_rng(0)) is speech
