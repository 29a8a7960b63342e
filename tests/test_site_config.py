"""The site's settings on real databases: silent mode, studies switched off, card limits,
client options."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from cds_service import create_app
from cds_service.config import SettingsError
from cds_service.report import build_report

from .conformance import ratings
from .conftest import FIXTURES, load_json
from .databases import MakeApp
from .store_calls import NS, SELECT, SIGN, seed, store_of


def test_silent_mode_returns_nothing_but_audits(make_app: MakeApp, tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text("silent = true\n")
    app = make_app(config_file=str(config))
    body = app.test_client().post(SELECT, json=seed()).get_json()
    assert body == {"cards": []}
    report = build_report(store_of(app))
    assert report["silent_mode_verdicts"] == {"warn": 1}
    assert report["cards_issued"] == 0


def test_site_config_disables_a_study_and_limits_cards(make_app: MakeApp, tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('warn_studies = ["ct-chest"]\nmax_cards = 1\nsnooze_months = [3]\n')
    app = make_app(config_file=str(config))
    client = app.test_client()
    assert client.post(SELECT, json=seed()).get_json()["cards"] == []
    two = load_json(FIXTURES / "requests" / "ct-chest-and-ct-abdomen-pelvis-two-orders.json")
    cards = client.post(SIGN, json=two).get_json()["cards"]
    assert [c["extension"][NS]["study"] for c in cards] == ["ct-chest"]
    codes = {r["code"] for r in cards[0]["overrideReasons"]}
    assert "snooze-3-months" in codes and "snooze-6-months" not in codes


@pytest.mark.parametrize(
    ("text_", "message"),
    [
        ("silent = maybe", "CDS_CONFIG_FILE"),
        ("colour = 'red'", "colour"),
        ('warn_studies = ["mammography"]', "warn_studies"),
        ("max_cards = 0", "max_cards"),
        ("snooze_months = [5]", "snooze_months"),
    ],
)
def test_bad_site_config_stops_the_service(tmp_path: Path, text_: str, message: str) -> None:
    config = tmp_path / "site.toml"
    config.write_text(text_ + "\n")
    with pytest.raises(SettingsError, match=message):
        create_app({"config_file": str(config), "instance_dir": str(tmp_path)})


def test_client_options_are_honoured(make_app: MakeApp) -> None:
    client = make_app().test_client()

    def post(options: dict[str, Any], body: dict[str, Any] | None = None, url: str = SELECT) -> Any:
        body = copy.deepcopy(body or seed())
        body["extension"] = {"breast-surveillance-cds.configuration": options}
        return client.post(url, json=body).get_json()

    switched_off = post({"warnings": False})
    assert switched_off["cards"] == []
    assert set(ratings(switched_off).values()) == {"not-appropriate"}
    plain = post({"suggestions": False, "system-actions": False})
    assert "suggestions" not in plain["cards"][0] and "systemActions" not in plain
    two = load_json(FIXTURES / "requests" / "ct-chest-and-ct-abdomen-pelvis-two-orders.json")
    assert len(post({"max-cards": 1}, two, SIGN)["cards"]) == 1
    assert len(post({"max-cards": "one", "unknown": 1}, two, SIGN)["cards"]) == 2  # ignored
    crd = copy.deepcopy(seed())
    crd["extension"] = {"davinci-crd.configuration": {"warnings": False}}
    assert client.post(SELECT, json=crd).get_json()["cards"] == []
