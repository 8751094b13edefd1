"""NAB scoring rules on hand-made files with hand-computed scores, and on the real label file."""

from pathlib import Path

import numpy as np
import pytest

from evaluation import nab, nab_corpus

STANDARD = nab.Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
LOW_FP = nab.Profile("reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0)
LOW_FN = nab.Profile("reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0)
CORPUS = Path(__file__).resolve().parents[3] / "data" / "nab"

# 100 rows (timestamps 0..99): probation = floor(0.15 * 100) = 15 rows; one window on rows 40..49 (width 10).
N = 100
WINDOW = [(40, 49)]


def labels(windows=WINDOW, n=N, name="f"):
    return nab.label_file(name, list(range(n)), windows)


def detections(*rows, n=N):
    s = np.zeros(n)
    s[list(rows)] = 1.0
    return s


def score(rows, windows=WINDOW, profile=STANDARD):
    return nab.score_file(labels(windows), detections(*rows), 0.5, profile)


def test_probationary_period_is_15_percent_capped_at_750_rows():
    assert [nab.probationary_rows(n) for n in (100, 1127, 4032, 5000, 22695)] == [15, 169, 604, 750, 750]


def test_scaled_sigmoid_values():
    # 2 / (1 + e^(5x)) - 1: 2/(1+e^-5) - 1 = 0.986614 at -1, 0 at 0, -1 from 3 on
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.986614, abs=1e-6)
    assert nab.scaled_sigmoid(0.0) == 0.0
    assert nab.scaled_sigmoid(3.0) == -1.0 and nab.scaled_sigmoid(10.0) == -1.0


def test_tp_on_the_first_row_of_a_window_scores_tp_weight():
    s = score([40])
    assert (s.score, s.tp, s.fn, s.fp) == (pytest.approx(1.0), 1, 0, 0)


def test_tp_on_the_last_row_of_a_window():
    # position -(49 - 49 + 1) / 10 = -0.1; (2/(1+e^-0.5) - 1) / 0.986614 = 0.244919 / 0.986614 = 0.248242
    assert score([49]).score == pytest.approx(0.248242, abs=1e-6)


def test_only_the_earliest_detection_of_a_window_counts():
    # row 45: position -(49 - 45 + 1) / 10 = -0.5 -> (2/(1+e^-2.5) - 1) / 0.986614 = 0.848284 / 0.986614 = 0.859793
    assert score([45]).score == pytest.approx(0.859793, abs=1e-6)
    assert score([45, 47, 49]).score == pytest.approx(0.859793, abs=1e-6)
    assert score([41, 45]).score == score([41]).score


def test_fp_right_after_a_window_is_weighted_by_distance():
    # row 50: |49 - 50| / (10 - 1) = 1/9 -> 2/(1+e^(5/9)) - 1 = 2/2.742909 - 1 = -0.270849; x 0.11 = -0.029793;
    # window missed: -1
    s = score([50])
    assert (s.score, s.tp, s.fn, s.fp) == (pytest.approx(-1.029793, abs=1e-6), 0, 1, 1)
    # row 76: 27/9 = 3 -> -1 (the full FP weight)
    assert score([76]).score == pytest.approx(-1.11)


def test_fp_before_any_window_costs_the_full_fp_weight():
    assert score([20]).score == pytest.approx(-1.0 - 0.11)
    assert score([20], profile=LOW_FP).score == pytest.approx(-1.0 - 0.22)


def test_missed_window_costs_fn_weight():
    assert score([]).score == -1.0
    assert score([], profile=LOW_FN).score == -2.0
    assert nab.score_file(labels([]), detections(), 0.5, STANDARD).score == 0.0  # no window, no detection


def test_probationary_detections_are_ignored():
    s = score([10, 14])  # rows 0..14 are the probation
    assert (s.score, s.fp) == (-1.0, 0)
    assert score([15]).score == pytest.approx(-1.11)  # row 15 is scored (an FP)


def test_a_window_is_found_by_timestamp_and_measured_by_first_occurrence():
    # timestamps with a repeat: rows 3 and 4 both have t=3; window [3, 5] -> rows 3..6 by first occurrence of 5
    ts = [0, 1, 2, 3, 3, 4, 5, 6]
    f = nab.label_file("dup", ts, [(3, 5)])
    assert f.windows == ((3, 6),)
    assert f.window.tolist() == [-1, -1, -1, 0, 0, 0, 0, -1]
    assert f.tp_unit[3] == pytest.approx(1.0)  # width = 6 - 3 + 1 = 4 rows
    with pytest.raises(ValueError, match="not a timestamp"):
        nab.label_file("bad", ts, [(3, 9)])


def test_threshold_is_chosen_once_over_all_files():
    # file a: FP at row 20 (score 0.95, -0.11), window hit on its first row (0.9, +1 instead of -1);
    # file b (no window): two FPs at 0.8 (-0.11 each). Totals: none -1, >=0.95 -1.11, >=0.9 0.89, >=0.8 0.67.
    a = np.zeros(N)
    a[20], a[40] = 0.95, 0.9
    b = np.zeros(N)
    b[[30, 60]] = 0.8
    files = [labels(name="a"), labels([], name="b")]
    thresholds, totals = nab.sweep(files, [a, b], STANDARD)
    assert thresholds[:4].tolist() == [nab.NO_DETECTION, 0.95, 0.9, 0.8]
    assert totals[:4] == pytest.approx([-1.0, -1.11, 0.89, 0.67])
    best = nab.optimise(files, [a, b], STANDARD)
    assert (best.threshold, best.tp, best.fp, best.fn) == (0.9, 1, 1, 0)
    assert best.raw == pytest.approx(0.89)
    assert best.normalised == pytest.approx(100 * (0.89 + 1) / 2)


def test_no_detection_wins_when_every_detection_is_false():
    s = np.zeros(N)
    s[[20, 30]] = 0.7
    best = nab.optimise([labels([])], [s], STANDARD)
    assert best.threshold == nab.NO_DETECTION and best.raw == 0.0


def test_sweep_agrees_with_scoring_each_threshold():
    rng = np.random.default_rng(0)
    files = [labels(name="a"), labels([(20, 29), (60, 79)], name="b"), labels([], name="c")]
    scores = [np.round(rng.random(N), 2) for _ in files]
    for profile in (STANDARD, LOW_FP, LOW_FN):
        thresholds, totals = nab.sweep(files, scores, profile)
        for t, total in zip(thresholds, totals, strict=True):
            assert total == pytest.approx(nab.evaluate(files, scores, profile, t).raw)


def test_scores_of_the_wrong_length_are_refused():
    with pytest.raises(ValueError, match="99 scores for 100 rows"):
        nab.score_file(labels(), np.zeros(N - 1), 0.5, STANDARD)


@pytest.fixture(scope="module")
def corpus_labels():
    corpus = nab_corpus.load(CORPUS)
    return corpus, [corpus.labels(name, corpus.read(name)["timestamp"]) for name in corpus.names]


def test_null_scores_0_and_perfect_scores_100_on_the_real_labels(corpus_labels):
    corpus, files = corpus_labels
    assert len(files) == 58 and sum(len(f.windows) for f in files) == 116
    null = [np.zeros(f.n_rows) for f in files]
    perfect = []
    for f in files:
        s = np.zeros(f.n_rows)
        s[[first for first, _ in f.windows]] = 1.0
        perfect.append(s)
    for profile in corpus.profiles.values():
        assert nab.optimise(files, null, profile).normalised == 0.0
        best = nab.optimise(files, perfect, profile)
        assert (best.normalised, best.tp, best.fp, best.fn) == (pytest.approx(100.0), 116, 0, 0)
    assert nab.null_score(files, corpus.profiles["reward_low_FN_rate"]) == -232.0


def test_profiles_and_asset_ids_from_the_corpus(corpus_labels):
    corpus, _ = corpus_labels
    assert corpus.profiles["reward_low_FP_rate"] == nab.Profile("reward_low_FP_rate", 1.0, 0.22, 1.0)
    assert nab_corpus.asset_id("realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv") == \
        "realAWSCloudwatch.iio_us-east-1_i-a2eb1cd9_NetworkIn"
    with pytest.raises(nab_corpus.CorpusError, match="not in"):
        nab_corpus.load(CORPUS, ["realKnownCause/nope.csv"])
