"""The safeguards: audit log, refusals, retention, erasure and the transparency report."""
