"""Real-time behaviour of `avsr live`: frame rate, dropped frames and caption latency, on GRID clips.

    .venv/bin/python -m avsr.bench.live_speed --json runs/bench_live.json

Concatenates s1 dev clips into one video (made once, in --workdir), then captions it as
`avsr live --source VIDEO --headless --out VIDEO --captions SRT` does, paced in real time, clean
and under babble noise: the frame rate kept, the frames dropped (not face-tracked), the latest a
frame reached the loop, each caption's latency after its speech ended, and the WER of the
audiovisual and the audio-only captions against the clips' sentences. Run on an otherwise idle machine.
"""

from __future__ import annotations

import json
import os

import jiwer

from avsr.bench import bench_parser
from avsr.bench.transcribe_speed import make_long_video
from avsr.live import LiveOptions, run_live
from avsr.train import split
from avsr.transcribe import babble_pool
from data.grid import DEV_SIZE, MANIFEST_NAME, grid_dir
from data.manifest import read_manifest

CLIPS = 10  # 30 s of video: ten utterances, one caption each
CONDITIONS = ((None, 0.0), ("babble", 0.0))  # (noise, SNR dB)


def main() -> None:
    args = bench_parser(__doc__, "runs/bench_live").parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    manifest = grid_dir() / MANIFEST_NAME
    clips = split(read_manifest(manifest), DEV_SIZE)[1][:CLIPS]
    video = args.workdir / f"dev{CLIPS}.mp4"
    if not video.is_file():
        make_long_video([clip.video for clip in clips], video)
    said = " ".join(clip.transcript for clip in clips)
    report: dict[str, object] = {"model": args.model, "cpus": os.cpu_count(), "video_s": 3 * CLIPS,
                                 "runs": []}
    for noise, snr in CONDITIONS:
        name = "clean" if noise is None else f"{noise}{snr:g}dB"
        result = run_live(LiveOptions(
            source=str(video), model=args.model, device="cpu", noise=noise, snr=snr,
            babble=babble_pool(manifest), headless=True, out=args.workdir / f"{name}.mp4",
            captions=args.workdir / f"{name}.srt"))
        heard = {head: " ".join(caption.transcripts[head].text for caption in result.captions
                                if head in caption.transcripts) for head in ("av", "audio")}
        run = {"condition": name, "frames": result.frames, "dropped": result.dropped,
               "fps": (result.frames - 1) / result.seconds, "max_lag_s": result.max_lag,
               "captions": len(result.captions), "latencies_s": result.latencies,
               "wer": {head: jiwer.wer(said, text) for head, text in heard.items()}}
        report["runs"].append(run)
        print(f"{name}: {result.summary()}; WER av {run['wer']['av']:.3f}, audio {run['wer']['audio']:.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
