"""The practice's rules for its records: AI consent and the retention period.

Read from the tenant's ``practice_settings`` row (absent until an admin changes a
setting; then the defaults apply). ``retain_until`` is the one place the end of a
record's retention is computed (§ 630f(3) BGB: years after the treatment ended).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import PracticeSettings


@dataclass(frozen=True, slots=True)
class PracticeRules:
    ai_consent_required: bool
    record_retention_years: int


def practice_rules(db: Session, default_retention_years: int) -> PracticeRules:
    """The practice's settings, with the platform's retention period where it set none
    (and never shorter than it)."""
    row = db.execute(select(PracticeSettings.ai_consent_required,
                            PracticeSettings.record_retention_years)).one_or_none()
    if row is None:
        return PracticeRules(True, default_retention_years)
    years = max(row.record_retention_years or 0, default_retention_years)
    return PracticeRules(bool(row.ai_consent_required), years)


def retain_until(treatment_ended_on: dt.date | None, years: int) -> dt.date | None:
    """The last day the record must be kept; None while treatment is ongoing.

    A treatment that ended on 29 February is kept until 1 March of the final year (the
    longer reading: a record is never erased a day early).
    """
    if treatment_ended_on is None:
        return None
    try:
        return treatment_ended_on.replace(year=treatment_ended_on.year + years)
    except ValueError:
        return dt.date(treatment_ended_on.year + years, 3, 1)
