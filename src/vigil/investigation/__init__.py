"""Investigations: sightings kept by cameras that opted in, retrospective search, unknown-face clusters,
and comparison of one gallery against another."""
