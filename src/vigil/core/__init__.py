"""Value types, errors, settings and model cards shared by every layer."""
