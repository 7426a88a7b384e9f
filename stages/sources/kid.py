"""KID (capsule endoscopy): class folders (or flat), patient number in the file name."""

from __future__ import annotations

import re

from endoctl.sources.base import Adapter, FileEntry, ImageRecord, Rejection, register

PATIENT = re.compile(r"-P([0-9]+)-", re.IGNORECASE)  # ASCII digits only: \d also matches e.g. "٣"
LEADING_NAME = re.compile(r"^[A-Za-z]+(?:[ _][A-Za-z]+)*")


def kid_patient(stem: str) -> str:
    """``angioectasia-P3-12`` -> ``P3``; names without a ``-P<n>-`` part have no patient."""
    match = PATIENT.search(stem)
    return f"P{int(match.group(1))}" if match else ""


@register
class KID(Adapter):
    name = "kid"
    layout = "<class>/<class>-P<n>-<k>.jpg, or flat <class>-P<n>-<k>.jpg"
    label_rule = "the class folder; in a flat folder, the leading letters of the file name"
    patient_rule = "P<n> from '-P<n>-' in the file name (e.g. angioectasia-P3-12.jpg -> P3); else empty"

    def record(self, entry: FileEntry) -> ImageRecord | Rejection:
        if len(entry.parts) == 2:
            label = entry.parts[0]
        elif len(entry.parts) == 1 and (match := LEADING_NAME.match(entry.stem)):
            label = match.group(0)
        else:
            return self.misplaced(entry)
        return ImageRecord(entry.file, entry.rel, label, patient_id=kid_patient(entry.stem))
