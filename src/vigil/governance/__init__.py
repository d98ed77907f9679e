"""The safeguards that work across domains: retention, erasure and the transparency report.

The audit log is :mod:`vigil.storage.audit` (every service writes its entries in its own transaction);
the refusals of sensitive traits are :mod:`vigil.core.refusals`.
"""
