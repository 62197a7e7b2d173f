"""The simulated patient: deterministic replies and live vital signs from a patient profile.

Replies are keyword-driven (greeting, complaint, pain, onset, history, medications, allergies,
family, social, fallback). The wording varies with a hash of the student's message, so the same
question to the same patient always gets the same answer: no external AI, reproducible tests.

Vital signs are a mean-reverting random walk around ``profile["vitals_baseline"]``, clamped to the
CHECK ranges of the ``vitals`` table so every sample can be stored.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The CHECK ranges of emrops.db.schema.vitals (inclusive).
VITAL_LIMITS: dict[str, tuple[float, float]] = {
    "heart_rate": (0, 300),
    "systolic_bp": (0, 300),
    "diastolic_bp": (0, 200),
    "spo2": (0, 100),
    "respiratory_rate": (0, 80),
    "temperature": (25.0, 45.0),
}
DEFAULT_BASELINE: dict[str, float] = {
    "heart_rate": 80,
    "systolic_bp": 120,
    "diastolic_bp": 80,
    "spo2": 98,
    "respiratory_rate": 16,
    "temperature": 36.8,
}
# Per-tick noise (standard deviation) and how strongly a value is pulled back to its baseline.
_NOISE = {
    "heart_rate": 2.5,
    "systolic_bp": 3.0,
    "diastolic_bp": 2.0,
    "spo2": 0.7,
    "respiratory_rate": 0.8,
    "temperature": 0.05,
}
_PULL = 0.25

# Topics in priority order: the first whose pattern matches wins.
_TOPICS: list[tuple[str, re.Pattern[str]]] = [
    ("allergies", re.compile(r"\ballerg|\breaction")),
    (
        "medications",
        re.compile(r"\bmedicat|\bmedicine|\btablet|\bpill|\bdrug|\binhaler|\binsulin|\bprescri"),
    ),
    ("family", re.compile(r"\bfamily|\bfather|\bmother|\bparent|\bsibling|\bbrother|\bsister")),
    (
        "social",
        re.compile(r"\bsmok|\balcohol|\bdrink|\bwork|\bjob|\blive with|\blive alone|\boccupation"),
    ),
    (
        "history",
        re.compile(r"\bhistory|\bcondition|\bill(ness)?\b|\bsurgery|\boperation|\bhospital|\bpast"),
    ),
    (
        "onset",
        re.compile(r"\bwhen\b|\bstart|\bbegan|\bbegin|\bhow long|\bsince|\bonset|\bsudden"),
    ),
    (
        "pain",
        re.compile(r"\bpain|\bhurt|\bache|\bsore|\bwhere\b|\bscale|\bradiat|\bspread|\bsevere"),
    ),
    (
        "complaint",
        re.compile(r"what brings|\bwrong\b|\bproblem|\bmatter\b|\bhow (are|do) you feel"),
    ),
    ("greeting", re.compile(r"^\s*(hi|hello|hey|good (morning|afternoon|evening))\b|my name is")),
]

_MOOD_OPENERS = {
    "anxious": ["(anxiously) ", "(looking worried) ", ""],
    "frightened": ["(breathless) ", "(frightened) ", ""],
    "confused": ["(hesitating) ", "(looking around) ", ""],
    "uncomfortable": ["(wincing) ", "(shifting on the bed) ", ""],
    "tired": ["(wearily) ", "(sighing) ", ""],
}

_TEMPLATES: dict[str, list[str]] = {
    "greeting": [
        "Hello, doctor. I'm {name}. I'm glad someone's here, {complaint}.",
        "Hi. {name}, that's me. Please help, {complaint}.",
        "Good to see you. I'm {name}, {age} years old. Honestly, {complaint}.",
    ],
    "complaint": [
        "It's {complaint}.",
        "Well, {complaint}. It started {onset}.",
        "Mainly {complaint}. I've never felt like this before.",
    ],
    "pain": [
        "It's in the {location}. It goes to my {radiation}. I'd say {severity} out of 10.",
        "Right here, the {location}. About a {severity} out of 10, and it spreads to my "
        "{radiation}.",
        "The {location} mostly. On a scale of ten it's a {severity}. {radiation_sentence}",
    ],
    "onset": [
        "It started {onset}.",
        "{onset_cap}. It hasn't let up since.",
        "Let me think... {onset}. It's been getting worse.",
    ],
    "history": [
        "I have {history}.",
        "My doctor says I've got {history}.",
        "Nothing much apart from {history}.",
    ],
    "medications": [
        "I take {medications}.",
        "Let me remember... {medications}.",
        "Just {medications}. I try not to miss them.",
    ],
    "allergies": [
        "Allergies? {allergies_cap}.",
        "Yes, {allergies}. I always tell people that.",
        "I know of {allergies}.",
    ],
    "family": [
        "In my family, {family}.",
        "Well, {family}.",
        "My family? {family_cap}.",
    ],
    "social": [
        "{social_cap}, that's about it.",
        "Let's see: {social}.",
        "{social_cap}. Why do you ask?",
    ],
    "fallback": [
        "I'm not sure what you mean, doctor. It's {complaint} that worries me.",
        "Sorry, could you ask me that again? I'm finding it hard to think.",
        "I don't really know. All I know is {complaint}.",
        "Could you explain that? I just want this to stop.",
    ],
}


@dataclass(frozen=True)
class PatientReply:
    """What the simulated patient says, and which topic the question was taken to be about."""

    text: str
    topic: str


def classify(content: str) -> str:
    """The topic of a student's message (``fallback`` when nothing matches)."""
    text = content.lower()
    for topic, pattern in _TOPICS:
        if pattern.search(text):
            return topic
    return "fallback"


def _digest(content: str) -> int:
    normal = " ".join(content.lower().split())
    return int.from_bytes(hashlib.sha256(normal.encode("utf-8", "replace")).digest()[:8], "big")


def _join(items: Any, default: str) -> str:
    if isinstance(items, str):
        return items or default
    values = [str(item) for item in (items or []) if str(item).strip()]
    if not values:
        return default
    if len(values) == 1:
        return values[0]
    return ", ".join(values[:-1]) + " and " + values[-1]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _fields(profile: Mapping[str, Any]) -> dict[str, str]:
    pain = profile.get("pain") if isinstance(profile.get("pain"), Mapping) else {}
    assert isinstance(pain, Mapping)
    radiation = str(pain.get("radiation") or "none")
    onset = str(profile.get("onset") or "a little while ago")
    family = str(profile.get("family_history") or "nothing I know of")
    social = str(profile.get("social") or "nothing special to tell")
    return {
        "name": str(profile.get("name") or "the patient"),
        "age": str(profile.get("age") or "unknown"),
        "complaint": str(profile.get("chief_complaint") or "I just don't feel well"),
        "location": str(pain.get("location") or "middle"),
        "radiation": radiation if radiation != "none" else "nowhere else",
        "radiation_sentence": (
            "It doesn't spread anywhere." if radiation == "none" else f"It goes to my {radiation}."
        ),
        "severity": str(pain.get("severity") or 5),
        "onset": onset,
        "onset_cap": _cap(onset),
        "history": _join(profile.get("history"), "nothing serious"),
        "medications": _join(profile.get("medications"), "nothing regularly"),
        "allergies": _join(profile.get("allergies"), "none known"),
        "allergies_cap": _cap(_join(profile.get("allergies"), "none known")),
        "family": family,
        "family_cap": _cap(family),
        "social": social,
        "social_cap": _cap(social),
    }


def reply(profile: Mapping[str, Any], content: str) -> PatientReply:
    """The patient's answer to ``content``; the same (profile, content) always gives the same
    reply. Never raises for odd profiles: missing fields fall back to neutral wording."""
    topic = classify(content)
    digest = _digest(content)
    templates = _TEMPLATES[topic]
    text = templates[digest % len(templates)].format(**_fields(profile))
    openers = _MOOD_OPENERS.get(str(profile.get("mood") or ""), [""])
    opener = openers[(digest >> 16) % len(openers)]
    return PatientReply(text=opener + text, topic=topic)


def baseline(profile: Mapping[str, Any]) -> dict[str, float]:
    """The profile's vitals baseline, completed with adult defaults and clamped to the limits."""
    given = profile.get("vitals_baseline")
    given = given if isinstance(given, Mapping) else {}
    out: dict[str, float] = {}
    for key, default in DEFAULT_BASELINE.items():
        try:
            value = float(given.get(key, default))
        except (TypeError, ValueError, OverflowError):
            value = default
        if not math.isfinite(value):
            value = default
        low, high = VITAL_LIMITS[key]
        out[key] = min(max(value, low), high)
    return out


class VitalsStream:
    """Live vital signs for one patient: each :meth:`next` is one plausible sample.

    A mean-reverting random walk around the baseline; deterministic for a given ``seed``.
    """

    def __init__(self, profile: Mapping[str, Any], seed: int | str | None = None):
        self.baseline = baseline(profile)
        self._rng = random.Random(seed)
        self._current = dict(self.baseline)

    def next(self) -> dict[str, int | float]:
        for key, base in self.baseline.items():
            value = self._current[key]
            value += _PULL * (base - value) + self._rng.gauss(0.0, _NOISE[key])
            low, high = VITAL_LIMITS[key]
            self._current[key] = min(max(value, low), high)
        return _rounded(self._current)


def _rounded(values: Mapping[str, float]) -> dict[str, int | float]:
    out: dict[str, int | float] = {
        key: int(round(values[key]))
        for key in ("heart_rate", "systolic_bp", "diastolic_bp", "spo2", "respiratory_rate")
    }
    out["temperature"] = round(values["temperature"], 1)
    # A diastolic pressure at or above the systolic is not a reading anyone would record.
    out["diastolic_bp"] = max(0, min(int(out["diastolic_bp"]), int(out["systolic_bp"]) - 10))
    for key, (low, high) in VITAL_LIMITS.items():
        value = min(max(out[key], low), high)
        out[key] = round(float(value), 1) if key == "temperature" else int(value)
    return out


def sample_vitals(profile: Mapping[str, Any], seed: int | str | None = None) -> dict[str, Any]:
    """One sample around the baseline (the first tick of a fresh :class:`VitalsStream`)."""
    return VitalsStream(profile, seed).next()
