# The service under gunicorn, as a non-root user, on a slim Python image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --system --uid 10001 --home /app cds

COPY pyproject.toml README.md ./
COPY cds_service ./cds_service
COPY mappings ./mappings
RUN pip install --no-cache-dir . && cds-service check-mappings /app/mappings

USER cds
EXPOSE 8000
ENV CDS_MAPPINGS_DIR=/app/mappings
HEALTHCHECK --interval=30s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/cds-services', timeout=2)"
# --allow-unauthenticated is not needed here: bind inside the container, publish via compose.
CMD ["cds-service", "serve", "--host", "0.0.0.0", "--port", "8000"]
