"""Speed and memory of `avsr transcribe` with the bundled model: run on an otherwise idle machine.

    .venv/bin/python -m avsr.bench.transcribe_speed --json runs/bench_transcribe.json

1. Cold start: a new `avsr transcribe` process on one 3 s clip, to its printed transcript.
2. Real-time factor: the 100 s1 dev clips in one call (all CPUs), preprocessing and decoding
   included: seconds of wall time per second of video.
3. Long videos: s1 clips concatenated into 1- and 10-minute videos (made once, in --workdir),
   each transcribed by one process: wall time, peak memory (max RSS), and WER against the
   clips' sentences, which shows the windows stitch without losing or doubling words.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import jiwer

from avsr.bench import bench_parser
from avsr.train import split
from data.grid import DEV_SIZE, MANIFEST_NAME, grid_dir
from data.manifest import read_manifest
from preprocessing.audio import SAMPLE_RATE, decode_audio, fit_to_video
from preprocessing.video import VIDEO_FPS, iter_frames

AVSR = [str(Path(sys.executable).parent / "avsr")]  # the installed command, as users run it
TIME = "/usr/bin/time"  # GNU time: %M is the peak resident memory in KB
COLD_RUNS = 3
LONG_MINUTES = (1, 10)
CLIP_SECONDS = 3  # GRID clips: 75 frames


def run(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak memory in MB of the process, its stdout) of `command`.

    GNU time measures the memory: a child forked from this (large) process would count its pages.
    """
    start = time.perf_counter()
    done = subprocess.run([TIME, "-f", "%M", *command], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    return seconds, int(done.stderr.split()[-1]) / 1024, done.stdout


def make_long_video(clips: list[Path], path: Path) -> None:
    """Concatenate `clips` into one 25 fps video with their sound, a frame at a time."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=VIDEO_FPS)
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        frame_index = sample_index = 0
        for clip in clips:
            frames = [frame.rgb for frame in iter_frames(clip)]
            if frame_index == 0:
                video.height, video.width = frames[0].shape[:2]
            for rgb in frames:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts, frame.time_base = frame_index, Fraction(1, VIDEO_FPS)
                container.mux(video.encode(frame))
                frame_index += 1
            waveform = fit_to_video(decode_audio(clip), len(frames))
            for start in range(0, len(waveform), 1024):
                piece = av.AudioFrame.from_ndarray(waveform[None, start : start + 1024], format="flt",
                                                   layout="mono")
                piece.sample_rate, piece.pts = SAMPLE_RATE, sample_index
                container.mux(sound.encode(piece))
                sample_index += piece.samples
        container.mux(video.encode(None))
        container.mux(sound.encode(None))


def main() -> None:
    args = bench_parser(__doc__, "runs/bench_transcribe").parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    utterances = read_manifest(grid_dir() / MANIFEST_NAME)
    train, dev = split(utterances, DEV_SIZE)
    report: dict[str, object] = {"model": args.model, "cpus": os.cpu_count()}
    base = [*AVSR, "transcribe", "--model", args.model, "--device", "cpu"]

    cold = [run([*base, str(dev[0].video)])[0] for _ in range(COLD_RUNS)]
    report["cold_start_s"] = cold
    print(f"cold start to the first transcript: {', '.join(f'{s:.2f}' for s in cold)} s")

    out = args.workdir / "dev"
    seconds, _, _ = run([*base, *(str(u.video) for u in dev), "--format", "json", "--out", str(out)])
    duration = sum(json.loads((out / f"{u.video.stem}.json").read_text())["duration"] for u in dev)
    hypotheses = [json.loads((out / f"{u.video.stem}.json").read_text())["text"] for u in dev]
    report["batch"] = {"clips": len(dev), "wall_s": seconds, "video_s": duration,
                       "rtf": seconds / duration, "wer": jiwer.wer([u.transcript for u in dev], hypotheses)}
    print(f"{len(dev)} clips: {seconds:.1f} s for {duration:.0f} s of video, RTF {seconds / duration:.3f}")

    for minutes in LONG_MINUTES:
        clips = train[: minutes * 60 // CLIP_SECONDS]
        video = args.workdir / f"long{minutes}min.mp4"
        if not video.is_file():
            make_long_video([u.video for u in clips], video)
        seconds, peak_mb, stdout = run([*base, str(video)])
        wer = jiwer.wer(" ".join(u.transcript for u in clips), stdout.strip())
        report[f"long_{minutes}min"] = {"wall_s": seconds, "rtf": seconds / (60 * minutes),
                                        "peak_rss_mb": peak_mb, "wer": wer}
        print(f"{minutes} min video: {seconds:.1f} s, peak memory {peak_mb:.0f} MB, WER {wer:.3f}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
