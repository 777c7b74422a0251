"""`avsr.bench.train_speed`: it times real optimiser steps of the asked models and saves them."""

from __future__ import annotations

import json

import pytest

from avsr.bench import train_speed


def test_times_and_profiles_the_asked_case_in_both_precisions(tmp_path, capsys) -> None:
    out = tmp_path / "speed.json"
    train_speed.main(["--json", str(out), "--cases", "trunk", "--steps", "2", "--batch-size", "1",
                      "--device", "cpu", "--profile"])
    rows = json.loads(out.read_text())["rows"]
    assert [(row["case"], row["bf16"]) for row in rows] == [("trunk", False), ("trunk", True)]
    assert all(len(row["seconds"]) == 2 and min(row["seconds"]) > 0 for row in rows)
    assert all("aten::convolution" in row["profile"] for row in rows)  # its convolutions
    assert all(row["d_model"] == 496 for row in rows)  # the video kind's default width
    assert "| trunk | video | conv | 496 | crops | False |" in capsys.readouterr().out


def test_refuses_an_unknown_case(tmp_path) -> None:
    with pytest.raises(SystemExit):
        train_speed.main(["--json", str(tmp_path / "speed.json"), "--cases", "audio,dmf2"])
    assert not (tmp_path / "speed.json").exists()
