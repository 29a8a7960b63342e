"""The served floor: a bare Flask app that parses the request JSON and answers no cards.

Run under the same gunicorn settings as the service (``gunicorn 'bench.floor_app:create_app()'``),
it measures what gunicorn + Flask + JSON parsing cost with no CDS work at all.
"""

from __future__ import annotations

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/cds-services")
    def discovery() -> ResponseReturnValue:
        return jsonify(services=[])

    @app.post("/cds-services/<service_id>")
    def call(service_id: str) -> ResponseReturnValue:
        body = request.get_json()
        if not isinstance(body, dict):
            return jsonify(error="a JSON object is required"), 400
        return jsonify(cards=[])

    return app


app = create_app()
