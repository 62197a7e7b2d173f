"""The built-in scenario catalog: simulated patients with their profiles.

``ensure_scenarios`` inserts any missing catalog scenario (by slug); `sim init-db`
and `sim seed` call it, so a fresh database can start encounters at once.
The patient profile drives the simulated replies and the vitals baselines.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from emrops.db.engine import begin_write, db_errors
from emrops.db.schema import scenarios
from emrops.db.types import utcnow

CATALOG: list[dict[str, Any]] = [
    {
        "slug": "chest-pain",
        "title": "Acute chest pain in the emergency department",
        "description": "A 58-year-old man with crushing central chest pain for 40 minutes.",
        "patient_profile": {
            "name": "Robert Miller",
            "age": 58,
            "sex": "male",
            "chief_complaint": "crushing pain in the middle of my chest",
            "onset": "about forty minutes ago while carrying groceries",
            "pain": {
                "location": "centre of the chest",
                "radiation": "left arm and jaw",
                "severity": 8,
            },
            "history": ["hypertension", "type 2 diabetes", "smoker, 30 pack-years"],
            "medications": ["metformin 1 g twice daily", "lisinopril 10 mg daily"],
            "allergies": ["penicillin (rash)"],
            "family_history": "father died of a heart attack at 61",
            "social": "works as a lorry driver, drinks a few beers at weekends",
            "mood": "anxious",
            "vitals_baseline": {
                "heart_rate": 104,
                "systolic_bp": 158,
                "diastolic_bp": 94,
                "spo2": 95,
                "respiratory_rate": 20,
                "temperature": 36.8,
            },
        },
    },
    {
        "slug": "asthma-exacerbation",
        "title": "Wheeze and breathlessness",
        "description": "A 24-year-old woman with worsening asthma after a cold.",
        "patient_profile": {
            "name": "Amira Haddad",
            "age": 24,
            "sex": "female",
            "chief_complaint": "I can't catch my breath and my chest feels tight",
            "onset": "getting worse over two days since I caught a cold",
            "pain": {"location": "tight chest", "radiation": "none", "severity": 4},
            "history": ["asthma since childhood", "eczema"],
            "medications": ["salbutamol inhaler as needed", "beclometasone inhaler twice daily"],
            "allergies": ["none known"],
            "family_history": "mother has hay fever",
            "social": "nursing student, never smoked",
            "mood": "frightened",
            "vitals_baseline": {
                "heart_rate": 118,
                "systolic_bp": 124,
                "diastolic_bp": 78,
                "spo2": 91,
                "respiratory_rate": 28,
                "temperature": 37.2,
            },
        },
    },
    {
        "slug": "abdominal-pain",
        "title": "Right lower quadrant pain",
        "description": "A 19-year-old with abdominal pain moving to the right iliac fossa.",
        "patient_profile": {
            "name": "Jonas Weber",
            "age": 19,
            "sex": "male",
            "chief_complaint": "my stomach hurts, now mostly low on the right",
            "onset": "started around my belly button yesterday evening",
            "pain": {"location": "lower right abdomen", "radiation": "none", "severity": 7},
            "history": ["no previous illnesses"],
            "medications": ["none"],
            "allergies": ["none known"],
            "family_history": "nothing relevant",
            "social": "university student, plays football",
            "mood": "uncomfortable",
            "vitals_baseline": {
                "heart_rate": 96,
                "systolic_bp": 128,
                "diastolic_bp": 76,
                "spo2": 98,
                "respiratory_rate": 18,
                "temperature": 38.1,
            },
        },
    },
    {
        "slug": "sepsis-elderly",
        "title": "Confusion and fever in an older patient",
        "description": "An 82-year-old woman brought in confused with a fever.",
        "patient_profile": {
            "name": "Margaret O'Neill",
            "age": 82,
            "sex": "female",
            "chief_complaint": "I feel muddled and hot, and it burns when I pass water",
            "onset": "my daughter says since this morning",
            "pain": {"location": "lower tummy", "radiation": "back", "severity": 5},
            "history": ["atrial fibrillation", "osteoarthritis", "recurrent urinary infections"],
            "medications": ["apixaban 5 mg twice daily", "paracetamol as needed"],
            "allergies": ["trimethoprim (swelling)"],
            "family_history": "nothing she remembers",
            "social": "lives alone, daughter visits daily",
            "mood": "confused",
            "vitals_baseline": {
                "heart_rate": 112,
                "systolic_bp": 96,
                "diastolic_bp": 58,
                "spo2": 93,
                "respiratory_rate": 24,
                "temperature": 38.9,
            },
        },
    },
    {
        "slug": "diabetic-ketoacidosis",
        "title": "Vomiting and drowsiness in a young diabetic",
        "description": "A 16-year-old with type 1 diabetes, vomiting and abdominal pain.",
        "patient_profile": {
            "name": "Lea Novak",
            "age": 16,
            "sex": "female",
            "chief_complaint": "I keep being sick and I'm so thirsty",
            "onset": "since last night, I missed some insulin doses",
            "pain": {"location": "all over my tummy", "radiation": "none", "severity": 6},
            "history": ["type 1 diabetes since age 9"],
            "medications": ["insulin glargine at night", "insulin aspart with meals"],
            "allergies": ["none known"],
            "family_history": "grandfather had type 2 diabetes",
            "social": "at school, lives with parents",
            "mood": "tired",
            "vitals_baseline": {
                "heart_rate": 122,
                "systolic_bp": 104,
                "diastolic_bp": 64,
                "spo2": 98,
                "respiratory_rate": 30,
                "temperature": 37.0,
            },
        },
    },
]


def ensure_scenarios(engine: Engine, created_at: datetime | None = None) -> int:
    """Insert catalog scenarios that are missing (matched by slug); returns how many were added.
    ``created_at`` (default: now) makes a seeded database reproducible."""
    with db_errors(engine.url), begin_write(engine) as conn:
        existing = set(conn.execute(sa.select(scenarios.c.slug)).scalars())
        rows = [
            {**item, "created_at": created_at or utcnow()}
            for item in CATALOG
            if item["slug"] not in existing
        ]
        if rows:
            conn.execute(scenarios.insert(), rows)
    return len(rows)
