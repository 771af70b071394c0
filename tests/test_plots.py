"""The report's deltas plot: the paper's own Δ is marked without squeezing the measured intervals flat."""

import math

from PIL import Image

from reports.plots import delta_axis_limits, plot_deltas

ROWS = [
    {"variant": "w_llama", "axis": "network.llm", "delta": -8.1, "low": -13.5, "high": -2.6, "paper": -5.3},
    {"variant": "w_cross_attn", "axis": "network.fusion", "delta": 0.0, "low": -4.6, "high": 4.5, "paper": -44.4},
    {"variant": "w_cross_attn_tune_llm", "axis": "network.fusion", "delta": 1.8, "low": -4.0, "high": 7.3,
     "paper": -14.9},
    {"variant": "custom", "axis": "data.mix", "delta": 0.5, "low": -1.0, "high": 2.0, "paper": math.nan},
]


def test_a_near_paper_value_widens_the_axis_and_a_far_one_does_not():
    left, right = delta_axis_limits(ROWS)
    assert left == -14.9 - 2 and right == 7.3 + 6  # -14.9 is within reach (the measured span, 20.8 points)
    assert left > -44.4  # -44.4 is not: it is written at the edge instead
    assert delta_axis_limits([{k: v for k, v in r.items() if k != "paper"} for r in ROWS]) == (-13.5 - 2, 7.3 + 6)


def test_the_plot_is_drawn_with_and_without_paper_values(tmp_path):
    for name, rows in (("with", ROWS), ("without", [{**r, "paper": math.nan} for r in ROWS])):
        path = plot_deltas(rows, "lynx", "Open-VQA image accuracy", tmp_path / f"{name}.png")
        width, height = Image.open(path).size
        assert width > 800 and height > 200
