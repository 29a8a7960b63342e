"""What a card says (words from mappings/wording.json): every fixture card's detail within the
word budget, the warning's five things, record text shown literally, and a wording file that
breaks its rules stopping start-up."""

from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from markdown_it import MarkdownIt

from cds_service import cards as cards_module
from cds_service import create_app
from cds_service.errors import MappingError
from cds_service.mappings import load_dir
from cds_service.rules import REQUIRED_CONCEPTS

from .card_requests import mappings_with, request_of, without_mammograms
from .conftest import CASES_DOC, SERVICE_FOR_HOOK, TODAY, case_request

MAX_WORDS = 120  # a card interrupts ordering: it is read in seconds
BASE = "https://cds.example.org"
MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def visible_words(markdown: str) -> list[str]:
    """The words a reader sees once the card's markdown is rendered: markup, link targets and
    lone punctuation are not words; a radiation symbol (☢☢☢☢) is."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", MD.render(markdown)))
    return [t for t in text.split() if re.search(r"[^\W_]|[^\x00-\x7f]", t)]


def fixture_cards(client: FlaskClient) -> list[tuple[str, dict[str, Any]]]:
    cards = []
    for case in CASES_DOC["cases"]:
        request = case_request(case)
        response = client.post(
            f"/cds-services/{SERVICE_FOR_HOOK[request['hook']]}", json=request, base_url=BASE
        )
        assert response.status_code == 200
        cards += [(case["name"], card) for card in response.get_json()["cards"]]
    return cards


def test_every_fixture_card_detail_is_at_most_120_words(client: FlaskClient) -> None:
    cards = fixture_cards(client)
    assert len(cards) >= 30
    counts = {(name, card["indicator"]): len(visible_words(card["detail"])) for name, card in cards}
    too_long = {key: n for key, n in counts.items() if n > MAX_WORDS}
    assert not too_long, f"card details over {MAX_WORDS} words: {too_long}"
    for _, card in cards:  # the service's own count (its word budget) reads as this one does
        assert cards_module.visible_words(card["detail"]) == len(visible_words(card["detail"]))


def test_a_record_with_many_long_entries_still_fits(client: FlaskClient) -> None:
    """Real records name more and longer entries than the fixtures: past two records they are
    counted ("and 4 more"), and a detail still too long names one, then cuts its label."""
    case = next(c for c in CASES_DOC["cases"] if c["name"] == "seed-pet-ct")
    body = copy.deepcopy(case_request(case))
    entries = body["prefetch"]["conditions"]["entry"]
    cancer = next(e for e in entries if "254837009" in json.dumps(e) or "C50" in json.dumps(e))
    for i in range(4):
        extra = copy.deepcopy(cancer)
        extra["resource"]["id"] = f"extra-{i}"
        extra["resource"]["code"]["text"] = (
            f"Invasive lobular carcinoma of the right breast, multifocal, ER+ PR+ HER2-, {i}"
        )
        extra["resource"]["onsetDateTime"] = f"201{i}-03-01"
        entries.append(extra)
    response = client.post(SERVICE + "order-select", json=body, base_url=BASE)
    [card] = response.get_json()["cards"]
    assert card["indicator"] == "warning"
    assert len(visible_words(card["detail"])) <= MAX_WORDS
    assert "more; no new symptoms" in card["detail"]
    # The service's own count (which picks the shorter form) agrees with this test's.
    assert cards_module.visible_words(card["detail"]) == len(visible_words(card["detail"]))


def test_word_count_reads_what_is_shown() -> None:
    assert visible_words(
        "**PET/CT: Usually** ☢☢☢ (1-10 mSv).\n\n- a\n- b :\n\n[x y](https://z/q)"
    ) == [
        "PET/CT:",
        "Usually",
        "☢☢☢",
        "(1-10",
        "mSv).",
        "a",
        "b",
        "x",
        "y",
    ]


def seed_card(client: FlaskClient, name: str = "seed-pet-ct") -> dict[str, Any]:
    case = next(c for c in CASES_DOC["cases"] if c["name"] == name)
    body = client.post(SERVICE + "order-select", json=case_request(case), base_url=BASE)
    card: dict[str, Any] = body.get_json()["cards"][0]
    return card


SERVICE = "/cds-services/breast-surveillance-"


def test_warning_card_says_the_five_things_and_links_the_rest(client: FlaskClient) -> None:
    card = seed_card(client)
    detail = card["detail"]
    # The rating and radiation; one line of why; the alternative; the evidence; what changes it.
    assert "**PET/CT: Usually Not Appropriate**" in detail and "☢☢☢☢ (10-30 mSv)" in detail
    assert "**Why:**" in detail and "**Instead:**" in detail and "mammography" in detail
    assert (
        "**This patient:** Invasive ductal carcinoma" in detail
        and "(Condition, 2021-05-26)" in detail
    )
    assert "**What would change this:**" in detail and "targeted imaging" in detail
    # Counselling and the full rationale are on the page the card links to, not in the card.
    page = f"{BASE}/guidance/surveillance-imaging#pet-ct"
    assert f"]({page})" in detail
    assert card["links"][0]["url"] == page
    assert "partnership" not in detail and "reassurance" not in detail
    assert len(visible_words(detail)) <= 110  # the seed leaves room for an order reason line


def test_suggestion_labels_use_the_short_study_name(client: FlaskClient) -> None:
    assert seed_card(client)["suggestions"][0]["label"] == "Remove this PET/CT order"
    ct = seed_card(client, "ct-chest-loinc-24628-0")
    assert ct["suggestions"][0]["label"] == "Remove this CT chest order"


def test_order_reason_line_reads_for_a_diagnosis_or_a_follow_up_code(client: FlaskClient) -> None:
    z08 = seed_card(client, "order-reason-z08-surveillance")["detail"]
    assert (
        "Order reason *Surveillance after completed breast cancer treatment* is not a symptom."
        in z08
    )
    sandbox = seed_card(client, "sandbox-pama-pet-ct-78816")["detail"]
    assert "Order reason *Malignant neoplasm of breast (disorder)* is not a symptom." in sandbox
    for detail in (z08, sandbox):
        assert "routine follow-up" not in detail


def test_record_text_is_shown_literally_not_as_markdown_or_html(client: FlaskClient) -> None:
    case = next(c for c in CASES_DOC["cases"] if c["name"] == "order-reason-z08-surveillance")
    body = copy.deepcopy(case_request(case))
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["reasonCode"][0]["text"] = "<img src=x> *routine* [follow-up](https://x.example)"
    detail = client.post(SERVICE + "order-select", json=body, base_url=BASE).get_json()["cards"][0][
        "detail"
    ]
    rendered = MD.render(detail)
    assert "<img" not in rendered and "<em>routine</em>" not in rendered
    assert 'href="https://x.example"' not in rendered
    assert "&lt;img src=x&gt; *routine* [follow-up](https://x.example)" in rendered


def test_info_cards_link_their_guidance_page(client: FlaskClient) -> None:
    cards = {name: card for name, card in fixture_cards(client) if card["indicator"] == "info"}
    targeted = cards["new-bone-pain-pet-ct"]
    assert targeted["links"][0]["url"] == f"{BASE}/guidance/targeted-imaging#bone-pain"
    marker = cards["tumor-marker-cea"]
    assert marker["links"][0]["url"] == f"{BASE}/guidance/tumour-markers"
    assert "Khatcheressian" not in marker["detail"]  # the citation is on the page


# --- the patient handout --------------------------------------------------------------------


# --- the wording file is checked at start-up --------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["card"].update(remove_label="Remove {order}"), "unknown placeholders"),
        (lambda d: d["card"]["why_short"].pop("pet-ct"), "no line for the studies"),
        (lambda d: d["pages"].pop("tumour-markers"), "pages"),
        (lambda d: d["handout"].update(sections=[]), "handout.sections"),
    ],
    ids=["placeholder", "why-short", "page", "handout"],
)
def test_bad_wording_stops_start_up(tmp_path: Path, edit: Any, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        load_dir(mappings_with(tmp_path, "wording.json", edit), REQUIRED_CONCEPTS)


def test_every_card_phrase_comes_from_the_wording_file(tmp_path: Path) -> None:
    """The cards' prose lives in mappings/wording.json: change it there, the cards change."""

    def reword(doc: dict[str, Any]) -> None:
        card = doc["card"]
        card["instead"] = "**Instead:** EDITED-INSTEAD."
        card["tumor_marker_source_label"] = "EDITED-SOURCE"
        card["rating_action"] = "EDITED {rating}: {order}"
        card["mammogram_order"]["text"] = "EDITED-ORDER"

    app = create_app(
        {"today": TODAY, "mappings_dir": str(mappings_with(tmp_path, "wording.json", reword))}
    )
    client = app.test_client()
    seed = client.post(
        SERVICE + "order-select", json=without_mammograms(request_of("seed-pet-ct")), base_url=BASE
    ).get_json()
    [card] = seed["cards"]
    assert "**Instead:** EDITED-INSTEAD." in card["detail"]
    assert card["suggestions"][1]["actions"][1]["resource"]["code"]["text"] == "EDITED-ORDER"
    assert seed["systemActions"][0]["description"].startswith("EDITED not-appropriate: ")
    request = request_of("tumor-marker-cea")
    url = f"/cds-services/{SERVICE_FOR_HOOK[request['hook']]}"
    marker = client.post(url, json=request, base_url=BASE).get_json()
    assert marker["cards"][0]["source"]["label"] == "EDITED-SOURCE"
