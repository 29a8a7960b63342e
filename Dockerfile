# The service under gunicorn, as a non-root user, on a slim Python image.
#
# Secure by default: this command refuses to serve without client authentication
# (CDS_JWT_ISSUERS_FILE). docker-compose.yml's development profile adds --allow-unauthenticated
# for its private network; deploy/compose.production.yml mounts an issuers file instead.
# tests/test_deploy.py runs this file's CMD, USER and ENV against the built wheel (no Docker
# daemon in CI): keep them in the exec (JSON) form it reads.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY cds_service ./cds_service
COPY mappings ./mappings
COPY fixtures/patients ./fixtures/patients
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY constraints.txt /tmp/constraints.txt
COPY --from=build /wheels /tmp/wheels
# Dependencies from the pinned constraints, not resolved afresh at build time.
RUN pip install --no-cache-dir --constraint /tmp/constraints.txt /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels /tmp/constraints.txt \
 && cds-service check-mappings \
 && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent cds \
 && mkdir -p /var/lib/cds-service \
 && chown cds /var/lib/cds-service

# The instance folder (SQLite store, generated audit key, migration lock): a volume the
# service's user owns. With PostgreSQL and CDS_AUDIT_KEY set it holds only the lock file.
ENV CDS_INSTANCE_DIR=/var/lib/cds-service
VOLUME ["/var/lib/cds-service"]
WORKDIR /var/lib/cds-service
USER cds
EXPOSE 8000
# Ready: mappings loaded, database answering, schema at head (GET /ready; /health is liveness).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]
CMD ["cds-service", "serve", "--host", "0.0.0.0", "--port", "8000"]
