"""Galleries: galleries and identities, enrolment, matching, gallery scope, schedules and the model switch.

The tables, blobs and vector indexes they use are in :mod:`vigil.storage`.
"""
