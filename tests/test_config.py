"""Settings from CDS_* environment variables and overrides, and the site file's windows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from cds_service.config import SettingsError, SiteConfig, load_settings
from cds_service.rules import Windows


def test_environment_values_are_read_by_their_cds_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDS_TODAY", "2026-11-25")
    monkeypatch.setenv("CDS_CORS_ORIGINS", " https://a.example, https://b.example ,")
    monkeypatch.setenv("CDS_TRUST_PROXY", "yes")
    monkeypatch.setenv("CDS_FHIR_TIMEOUT", " 1.5 ")
    monkeypatch.setenv("CDS_LAB_WINDOW_DAYS", "30")
    settings = load_settings()
    assert settings.today == date(2026, 11, 25)
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.trust_proxy is True
    assert settings.fhir_timeout == 1.5
    assert settings.over(Windows()) == Windows(lab=30)


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDS_AUDIT_CALLS", "true")
    settings = load_settings({"audit_calls": False, "jwt_issuers_file": None, "today": ""})
    assert settings.audit_calls is False
    assert settings.jwt_issuers_file is None
    assert settings.today is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auto_migrate": "maybe"}, "CDS_AUTO_MIGRATE: 'maybe': must be true or false"),
        ({"fhir_timeout": "0"}, "CDS_FHIR_TIMEOUT: '0': "),
        ({"max_body_bytes": "-5"}, "CDS_MAX_BODY_BYTES: '-5': "),
        ({"colour": "red"}, "unknown setting 'colour'"),
    ],
)
def test_a_bad_setting_is_named(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(overrides)
    assert str(raised.value).startswith(message)


def test_the_site_file_windows_win_over_the_environment(tmp_path: Path) -> None:
    settings = load_settings({"symptom_new_days": "30", "lab_window_days": "45"})
    site = SiteConfig(symptom_new_days=60)
    assert site.over(settings.over(Windows())) == Windows(symptom_new=60, lab=45)
