"""The report's figures, checked as a reader sees them: every axes labelled and holding data,
titles that name the env and agent, the legend inside the image and off the data, and the
saved PNGs read back as images that are not blank."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from rlexp import report
from tests.conftest import fake_run


def sweep_of(tmp_path, groups: dict[str, list[list[tuple[int, float]]]], target=100.0):
    sweep = tmp_path / "sweep"
    for label, curves in groups.items():
        for seed, curve in enumerate(curves):
            run = fake_run(sweep, f"{label}_s{seed}", [label, f"seed={seed}"],
                           final=curve[-1][1], curve=curve, target=target)
            (run / "config.yaml").write_text(yaml.safe_dump(
                {"env": {"solved_return": target, "id": "CartPole-v1"},
                 "agent": {"name": "dqn"}}))
    return sweep


def check_figure(fig) -> None:
    """What a reader needs of a figure; raises AssertionError naming what is missing."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    fig_box = fig.bbox
    titles = [ax.get_title() for ax in fig.axes] + [fig.get_suptitle()]
    assert any("CartPole-v1" in t and "dqn" in t for t in titles), titles
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel(), f"unlabelled axes: {ax.get_title()}"
        points = sum(len(line.get_xdata()) for line in ax.get_lines()
                     if line.get_linestyle() != "--")
        assert points + len(ax.collections) > 0, f"empty axes: {ax.get_title()}"
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert (fig_box.x0 <= box.x0 and box.x1 <= fig_box.x1 and fig_box.y0 <= box.y0
            and box.y1 <= fig_box.y1), "legend outside the image"
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), "legend covers the data"


def test_every_report_figure_is_labelled_filled_and_keeps_its_legend_clear(tmp_path):
    a = [[(0, 10.0), (100, 60.0), (200, 120.0)], [(0, 20.0), (100, 80.0), (200, 90.0)]]
    b = [[(0, 5.0), (100, 40.0), (200, 50.0)], [(0, 15.0), (100, 30.0), (200, 150.0)]]
    sweep = sweep_of(tmp_path, {"optimizer.lr=0.0023456789": a, "optimizer.lr=0.01": b})
    rep = report.build_report(sweep)
    figs = report.figures(rep.groups, sweep)
    assert set(figs) == {sweep / "curves.png", sweep / "aggregate.png",
                         *(sweep / "curves" / f"optimizer.lr={v}.png"
                           for v in ("0.0023456789", "0.01"))}
    for fig in figs.values():
        check_figure(fig)
    curves = figs[sweep / "curves.png"].axes[0]
    # Short labels, a marker on every point, the target as a line, the CI over 2 seeds named.
    labels = [line.get_label() for line in curves.get_lines()]
    assert labels == ["lr=0.002346 (n=2)", "lr=0.01 (n=2)", "target 100"]
    assert curves.get_lines()[0].get_marker() == "o"
    assert list(curves.get_lines()[0].get_xdata()) == [0, 100, 200]
    assert "95% bootstrap CI over 2 seeds" in curves.get_title()
    # The saved images: PNGs of the figures' size, with ink in them.
    import matplotlib.image

    for path in rep.write():
        if path.suffix == ".png":
            pixels = matplotlib.image.imread(path)
            assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 300
            assert (pixels[..., :3] < 0.5).mean() > 0.005, f"{path.name} is blank"


def test_a_single_evaluation_per_run_is_drawn_as_points(tmp_path):
    sweep = sweep_of(tmp_path, {"optimizer.lr=0.1": [[(0, 3.0)], [(0, 5.0)]]})
    figs = report.figures(report.build_report(sweep).groups, sweep)
    line = figs[sweep / "curves.png"].axes[0].get_lines()[0]
    assert list(line.get_ydata()) == [4.0] and line.get_marker() == "o"
    for fig in figs.values():
        check_figure(fig)


def test_the_aggregate_figure_shows_the_iqm_interval_and_the_performance_profile(tmp_path):
    finals = [10.0, 20.0, 30.0, 40.0, 100.0]
    sweep = sweep_of(tmp_path, {"optimizer.lr=0.1": [[(0, v)] for v in finals]}, target=35.0)
    rep = report.build_report(sweep)
    fig = report.figures(rep.groups, sweep)[sweep / "aggregate.png"]
    left, right = fig.axes
    stats = rep.groups[0].returns()
    assert stats.iqm == 30.0 and stats.iqm_ci_low <= 30.0 <= stats.iqm_ci_high
    (profile,) = [line for line in right.get_lines() if line.get_linestyle() != "--"]
    taus, fraction = profile.get_xdata(), profile.get_ydata()
    # The fraction of the five runs above each tau, e.g. 3/5 just above 20.
    assert fraction[0] == pytest.approx(0.8) and fraction[-1] == 0.0
    assert fraction[np.searchsorted(taus, 25.0)] == pytest.approx(0.6)
    check_figure(fig)


def test_short_labels_keep_keys_apart_and_fall_back_when_two_would_read_alike():
    def group(*overrides):
        return report.Group(",".join(overrides), overrides=overrides)

    groups = [group("agent.epsilon.end=0.1", "env.end=3"), group("agent.epsilon.end=0.2",
                                                                  "env.end=3")]
    assert report.short_labels(groups) == ["epsilon.end=0.1,env.end=3",
                                           "epsilon.end=0.2,env.end=3"]
    alike = [group("optimizer.lr=0.100001"), group("optimizer.lr=0.100002")]
    assert report.short_labels(alike) == ["optimizer.lr=0.100001", "optimizer.lr=0.100002"]
    # Tables keep the keys, with Optuna's 17-digit floats cut to 6 significant digits.
    optuna = [group("optimizer.lr=0.0012520653814999472", "agent.batch_size=32")]
    assert report.short_labels(optuna, short_keys=False, digits=6) == [
        "optimizer.lr=0.00125207,agent.batch_size=32"]
