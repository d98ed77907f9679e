"""The camera pipeline: sources, detection, tracking, matching; events out."""
