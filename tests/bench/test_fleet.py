"""`python -m bench fleet`: both policies on one seed, every figure of issue 15."""

from __future__ import annotations

import json

import pytest

from bench import fleet

FIGURES = {
    "stranded",
    "no_capacity",
    "mean_detour_km",
    "mean_wait_minutes",
    "peak_site_load_vs_limit",
    "energy_cost_usd",
    "mae_30min_model",
    "mae_30min_naive",
}


@pytest.mark.timeout(300)
def test_the_fleet_bench_reports_every_figure_for_both_policies_on_one_seed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fleet.main(["--cars", "40", "--json", "--seed", "3"])
    report = json.loads(capsys.readouterr().out)
    assert report["seed"] == 3
    assert set(report["policies"]) == {"threshold", "predictive", "threshold_30km"}
    for figures in report["policies"].values():
        assert FIGURES <= set(figures) and figures["cars"] == 40
    predictive = report["policies"]["predictive"]
    assert predictive["mae_30min_model"] < predictive["mae_30min_naive"]
    assert [t["target"] for t in report["targets"]] == [
        "0 cars stranded with prediction-led booking",
        ">= 30 % fewer NO_CAPACITY answers",
        "MAE at 30 min >= 30 % lower than the naive last rate",
    ]


@pytest.mark.timeout(120)
def test_the_same_seed_gives_the_same_day() -> None:
    first = fleet.run_policy("threshold", 20, 9).figures()
    again = fleet.run_policy("threshold", 20, 9).figures()
    first.pop("seconds"), again.pop("seconds")
    assert first == again


def test_a_fleet_of_no_cars_is_refused_naming_the_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        fleet.main(["--cars", "0"])
    assert "--cars" in capsys.readouterr().err
