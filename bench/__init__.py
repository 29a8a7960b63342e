"""Performance benchmark of the CDS Hooks service: ``python -m bench`` (see bench/README.md)."""
