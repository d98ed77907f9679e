"""Employee attendance: consent-based enrolment, entrance-camera marks, and daily reports.

- :mod:`vigil.gallery.schedule`: a gallery's working hours and days, and the local time zone.
- :mod:`vigil.attendance.marks`: marks made by entrance cameras in the video pipeline.
- :mod:`vigil.attendance.report`: first-in / last-out, late arrivals and absences per person and day.
"""
