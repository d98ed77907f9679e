"""The gallery check as one self-contained HTML page: each finding with its photos side by side.

The thumbnails come from the blob store and are embedded (base64); the page loads nothing else.
It shows people's photos: keep it where the gallery's photos may be kept.
"""

from __future__ import annotations

import base64
import html
import io

from PIL import Image

from vigil.app import App
from vigil.gallery.hygiene import Finding, HygieneReport

THUMB_PX = 160

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
.finding{border:1px solid #ccc;border-radius:6px;padding:.8em;margin:.8em 0}
.kind{font-weight:bold;text-transform:uppercase;font-size:.8em;color:#a40}
.photos{display:flex;gap:.8em;flex-wrap:wrap;margin:.5em 0}
figure{margin:0;text-align:center;font-size:.8em}
figure.flagged img{outline:3px solid #c00}
code{background:#f3f3f3;padding:.1em .3em}
"""


def thumbnail(app: App, sha256: str) -> str:
    """A data: URL of a JPEG thumbnail of a stored photo ('' when the blob is missing or unreadable)."""
    try:
        data = app.blobs.get(sha256)
        with Image.open(io.BytesIO(data)) as opened:
            rgb = opened.convert("RGB")
        rgb.thumbnail((THUMB_PX, THUMB_PX))
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=85)
    except Exception:  # a missing or damaged blob leaves an empty frame, never a failed report
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _finding(app: App, f: Finding) -> str:
    e = html.escape
    figures = []
    for i, p in enumerate(f.photos):
        flagged = " flagged" if i == 0 and f.kind in ("wrong-photo", "low-quality") else ""
        src = thumbnail(app, p.sha256)
        figures.append(
            f'<figure class="{flagged.strip()}">'
            f'<img alt="photo {p.photo_id}" src="{src}" height="{THUMB_PX}">'
            f"<figcaption>{e(p.identity)} ({e(p.gallery)})<br>photo {p.photo_id} · q {p.quality:.2f}"
            f"<br><small>{e(p.sha256[:16])}</small></figcaption></figure>"
        )
    fixes = "".join(f"<li><code>{e(x.command)}</code></li>" for x in f.fixes)
    return (
        f'<div class="finding"><div class="kind">{e(f.kind)}</div><p>{e(f.message)}</p>'
        f'<div class="photos">{"".join(figures)}</div><p>Fix (a person decides):</p><ul>{fixes}</ul></div>'
    )


def render_html(app: App, report: HygieneReport) -> str:
    """The report as a page with no external resources."""
    e = html.escape
    head = (
        f"<h1>Gallery check: {e(report.gallery)}</h1><p>{report.identities} people, {report.photos} photos, "
        f"model {e(report.model_id)}; compared with: "
        f"{e(', '.join(report.compared_with) or 'no other gallery')}."
        f" Wrong photo below {report.wrong_photo_threshold:.3f} (FMR {report.wrong_photo_fmr:g}); one person "
        f"above {report.same_person_threshold:.3f} (FMR {report.same_person_fmr:g}); quality below "
        f"{report.min_quality:.2f}. {len(report.findings)} finding(s).</p>"
    )
    body = "".join(_finding(app, f) for f in report.findings) or "<p>Nothing found.</p>"
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Gallery check</title>'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">"
        f"<style>{_STYLE}</style></head><body>{head}{body}</body></html>"
    )
