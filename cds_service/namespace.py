"""The reverse-domain name of this service's own extension keys (CDS Hooks 2.0 §Extensions:
custom data under ``extension``, keys namespaced). ``example.org`` is the project's placeholder
domain until it has one of its own; the key is one constant so that changing it is one edit."""

from __future__ import annotations

NAMESPACE = "org.example.breast-surveillance-cds"
