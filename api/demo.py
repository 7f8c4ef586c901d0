"""The demo practice of ``flask dev seed``: fixed, clearly fictional users and records.

The ids are constants so that the OpenAPI examples (``api/examples.py``) name users that
exist in the demo practice and work as written.
"""

from __future__ import annotations

DEMO_PRACTICE_NAME = "Demo-Praxis Sonnenschein (fictional)"
# Token subjects of the demo users, shaped like B2C object ids.
DEMO_ADMIN_ID = "00000000-0000-4000-8000-00000000ad01"
DEMO_THERAPIST_ID = "00000000-0000-4000-8000-0000000000e1"
