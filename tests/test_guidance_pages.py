"""The pages the cards link to: a guidance page per card kind (no patient data) and a patient
handout patients understand (textstat grade), printable and phone friendly."""

from __future__ import annotations

import html
import json
import re

import pytest
import textstat  # type: ignore[import-untyped]
from flask.testing import FlaskClient

from cds_service.mappings import GUIDANCE_KINDS, load_dir
from cds_service.rules import REQUIRED_CONCEPTS

from .conftest import MAPPINGS, fixture_patient_words
from .test_cards_wording import BASE, fixture_cards

MAX_GRADE = 8.0  # patient-education material: Flesch-Kincaid grade 8 or below


def test_handout_is_a_phone_friendly_page(client: FlaskClient) -> None:
    response = client.get("/handouts/breast-surveillance")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert 'name="viewport"' in html and "mammogram" in html and "@media print" in html
    assert "<script" not in html and "http://" not in html.split("<footer>")[0]


@pytest.mark.parametrize("kind", GUIDANCE_KINDS)
def test_guidance_pages_are_served_without_patient_data(client: FlaskClient, kind: str) -> None:
    response = client.get(f"/guidance/{kind}", base_url=BASE)
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert 'name="viewport"' in page and "<script" not in page
    assert not {s for s in fixture_patient_words() if re.search(rf"\b{re.escape(s)}\b", page)}
    assert "/handouts/breast-surveillance" in page
    # Every card of a kind links the same address whatever the patient: no patient data in it.
    urls = {
        link["url"]
        for _, card in fixture_cards(client)
        for link in card["links"]
        if "/guidance/" in link["url"]
    }
    assert all(re.fullmatch(rf"{BASE}/guidance/[a-z-]+(#[a-z0-9-]+)?", u) for u in urls)


def test_surveillance_page_holds_what_left_the_card(client: FlaskClient) -> None:
    page = client.get("/guidance/surveillance-imaging").get_data(as_text=True)
    knowledge = load_dir(MAPPINGS, REQUIRED_CONCEPTS)
    heading = knowledge.wording.pages["surveillance-imaging"].counselling_heading
    assert f"<h2>{heading}</h2>" in page
    for point in knowledge.guideline.counselling:
        assert html.escape(point) in page
        # The heading is not said again by its bullets (issue 18).
        assert "asks for a scan" not in point and "asking for a scan" not in point
    assert 'id="pet-ct"' in page and "10-30 mSv" in page
    assert html.escape(knowledge.guideline.guideline.citation) in page
    assert client.get("/guidance/unknown").status_code == 404


JARGON = (
    "dyspnea",
    "hepatomegaly",
    "neurological",
    "metasta",
    "asymptomatic",
    "surveillance",
    "explain",
    "frame ",
    "patient",
    "variant",
    "incidental",
)


def handout_text(client: FlaskClient) -> str:
    """The handout's visible text, one sentence per heading and list item (a heading or a
    bullet without a full stop is still a unit of its own, as a reader takes it)."""
    page = client.get("/handouts/breast-surveillance").get_data(as_text=True)
    body = re.sub(r"<style>.*?</style>", " ", page.split("<body>", 1)[1], flags=re.S)
    lines = [line.strip() for line in html.unescape(re.sub(r"<[^>]+>", "\n", body)).splitlines()]
    return "\n".join(line if line[-1] in ".?!:" else line + "." for line in lines if line)


def test_handout_reads_at_grade_8_or_below(client: FlaskClient) -> None:
    text = handout_text(client)
    assert len(text.split()) > 300  # the whole handout, not a fragment
    grade = textstat.flesch_kincaid_grade(text)
    assert grade <= MAX_GRADE, f"Flesch-Kincaid grade {grade} > {MAX_GRADE}"


def test_handout_speaks_to_patients_in_plain_words(client: FlaskClient) -> None:
    text = handout_text(client).lower()
    assert not [word for word in JARGON if word in text]
    for needed in ("mammogram", "same day", "2 weeks", "bone", "cough", "yellow", "weight"):
        assert needed in text


def test_handout_has_a_printable_layout(client: FlaskClient) -> None:
    page = client.get("/handouts/breast-surveillance").get_data(as_text=True)
    assert "@media print" in page and "@page" in page
    assert page.count('class="box urgent"') == 1  # what to report the same day stands out


def test_openapi_describes_the_guidance_pages(client: FlaskClient) -> None:
    doc = json.loads(client.get("/openapi.json").get_data())
    [parameter] = doc["paths"]["/guidance/{kind}"]["get"]["parameters"]
    assert parameter["schema"]["enum"] == list(GUIDANCE_KINDS)
