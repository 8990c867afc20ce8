"""Phase summaries: one dataclass per kind of phase (phases/summaries.py), read from and written to
the same JSON object, and a DONE.json marker around each (app/pipeline_phases.py)."""
import json
import pathlib
import shutil

import pytest

from minillm.app.pipeline_phases import SUMMARIES, PhaseMarker, read_marker
from minillm.errors import UserError
from minillm.phases import summaries

RUN = pathlib.Path(__file__).parent / "fixtures" / "results_run"
PHASES = sorted(p.name for p in RUN.iterdir() if (p / "DONE.json").exists())


def saved(phase: str) -> dict:
    return json.loads((RUN / phase / "DONE.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("phase", PHASES)
def test_a_marker_reads_back_into_the_json_it_was_read_from(phase):
    marker = PhaseMarker.from_json(saved(phase))
    assert type(marker.summary) is SUMMARIES[phase]
    assert marker.to_json() == saved(phase)


def test_the_figures_are_attributes_under_the_keys_on_disk():
    keys, rlhf = saved("rlhf")["summary"], read_marker(str(RUN), "rlhf").summary
    assert (rlhf.versus.wins, rlhf.versus.win_rate) == (keys["rlhf_vs_sft_wins"], keys["rlhf_vs_sft_win_rate"])
    assert (rlhf.sampled.gold_rlhf, rlhf.seen.n) == (keys["sampled_gold_rlhf"], keys["seen_n"])
    sft = read_marker(str(RUN), "sft").summary
    assert isinstance(sft.after, summaries.AnswerScores) and sft.after.n == saved("sft")["summary"]["after"]["n"]
    assert read_marker(str(RUN), "best-of-n").summary.temperature == saved("best-of-n")["summary"]["temperature"]


@pytest.mark.parametrize("change, named", [(lambda s: s.pop("kl_to_reference"), "missing kl_to_reference"),
                                           (lambda s: s.update(surprise=1), "unknown surprise"),
                                           (lambda s: s.pop("seen_n"), "missing n")])
def test_a_marker_with_a_missing_or_unknown_key_is_one_clear_error(tmp_path, change, named):
    shutil.copytree(RUN, tmp_path / "run")
    marker = saved("rlhf")
    change(marker["summary"])
    (tmp_path / "run" / "rlhf" / "DONE.json").write_text(json.dumps(marker), encoding="utf-8")
    with pytest.raises(UserError, match=rf"rlhf/DONE.json is not a rlhf marker minillm wrote .*{named}"):
        read_marker(str(tmp_path / "run"), "rlhf")
    assert read_marker(str(tmp_path / "run"), "missing-phase") is None  # not finished: no marker
