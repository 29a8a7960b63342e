"""The only module doing HTTP to a FHIR server: reads and searches on ``fhirServer``."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urljoin

import orjson
import requests

from .errors import PrefetchUnavailable

logger = logging.getLogger("cds_service.fhir_client")


class FhirUnavailable(PrefetchUnavailable):
    """A query to the EHR's FHIR server failed (timeout, refused, HTTP error, not FHIR)."""


class FhirClient:
    """Reads from one FHIR base with the call's bearer token; the session is the caller's."""

    def __init__(
        self,
        session: requests.Session,
        base: str,
        token: str | None,
        timeout: float = 2.5,
        max_pages: int = 10,
    ) -> None:
        self.session = session
        self.base = base.rstrip("/") + "/"
        self.timeout = timeout
        self.max_pages = max_pages
        self.headers = {"Accept": "application/fhir+json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def get(self, url: str, what: str) -> Any:
        absolute = urljoin(self.base, url)
        if not absolute.startswith(self.base):
            # A next link that leaves the FHIR base would take the token elsewhere.
            raise FhirUnavailable(
                f"{what}: the FHIR server linked outside its base", [f"prefetch.{what}"]
            )
        try:
            response = self.session.get(absolute, headers=self.headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise FhirUnavailable(
                f"{what}: FHIR server not reachable ({type(exc).__name__})", [f"prefetch.{what}"]
            ) from exc
        if response.status_code == 404 and "?" not in url:
            return None  # a read of a resource that does not exist: no data
        if response.status_code >= 400:
            raise FhirUnavailable(
                f"{what}: FHIR server answered HTTP {response.status_code}", [f"prefetch.{what}"]
            )
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise FhirUnavailable(
                f"{what}: FHIR server sent no JSON", [f"prefetch.{what}"]
            ) from exc

    def fetch(self, url: str, what: str) -> list[Any]:
        """A read or a search; searches follow ``next`` links up to ``max_pages``."""
        pages = []
        page = self.get(url, what)
        pages.append(page)
        while isinstance(page, dict) and page.get("resourceType") == "Bundle":
            link = next(
                (
                    item.get("url")
                    for item in page.get("link") or []
                    if isinstance(item, dict) and item.get("relation") == "next"
                ),
                None,
            )
            if not link or len(pages) >= self.max_pages:
                break
            page = self.get(link, what)
            pages.append(page)
        return pages
