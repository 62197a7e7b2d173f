"""Words and phrases for generated EMRsim conversations (names, student questions, patient
answers built from a scenario's patient profile). Used by :mod:`emrops.sim.seed`."""

from __future__ import annotations

import math
from typing import Any

FIRST_NAMES = (
    "Aisha",
    "Ben",
    "Carlos",
    "Dana",
    "Elif",
    "Femi",
    "Grace",
    "Hiro",
    "Ines",
    "Jamal",
    "Kasia",
    "Liam",
    "Maya",
    "Nikolai",
    "Olu",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Umar",
    "Vera",
    "Wen",
    "Xavier",
    "Yara",
    "Zoe",
    "Arjun",
    "Bea",
    "Chidi",
    "Dmitri",
    "Emma",
    "Farah",
    "Gabriel",
    "Hana",
    "Ivan",
    "Julia",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
)
LAST_NAMES = (
    "Adeyemi",
    "Berg",
    "Chen",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Mensah",
    "Nakamura",
    "Okafor",
    "Patel",
    "Quintero",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Umarov",
    "Varga",
    "Wojcik",
    "Xu",
    "Yilmaz",
    "Zhang",
    "Andersson",
    "Brennan",
    "Costa",
    "Dlamini",
)

# History-taking conversation: topic -> student phrasings; the patient's answers come from
# the scenario's profile (see _patient_answers).
QUESTIONS: dict[str, tuple[str, ...]] = {
    "greeting": (
        "Hello, I'm one of the medical students. Could you tell me your name and age?",
        "Hi there, my name is Alex and I'm a student doctor. Can I confirm who I'm speaking to?",
        "Good morning. I'm a medical student working with the team today. What's your name?",
    ),
    "complaint": (
        "What brings you in today?",
        "Can you tell me what has been going on?",
        "How can we help you today?",
        "What's the main problem that brought you here?",
    ),
    "onset": (
        "When did this start?",
        "How long has this been going on?",
        "When did you first notice it?",
        "Did it come on suddenly or gradually?",
    ),
    "location": (
        "Where exactly is the pain?",
        "Can you show me where it hurts the most?",
        "Where do you feel it?",
    ),
    "radiation": (
        "Does the pain spread anywhere else?",
        "Does it move to your arm, back or jaw?",
        "Do you feel it anywhere apart from there?",
    ),
    "severity": (
        "On a scale of zero to ten, how bad is it?",
        "If ten is the worst pain imaginable, what number would you give it?",
        "How severe is the pain right now?",
    ),
    "history": (
        "Do you have any medical conditions?",
        "Have you had any health problems in the past?",
        "Are you under a doctor for anything?",
    ),
    "medications": (
        "Are you taking any medications at the moment?",
        "Do you take any regular tablets or inhalers?",
        "What medicines do you take?",
    ),
    "allergies": (
        "Do you have any allergies?",
        "Are you allergic to any medicines?",
        "Have you ever reacted badly to a medication?",
    ),
    "family": (
        "Does anything run in your family?",
        "Have any close relatives had similar problems?",
    ),
    "social": (
        "Can you tell me a bit about your work and home life?",
        "Do you smoke or drink alcohol?",
        "Who do you live with?",
    ),
    "feeling": (
        "How are you feeling in yourself right now?",
        "How are you coping with all this?",
        "Is there anything worrying you in particular?",
    ),
    "exam": (
        "I'd like to examine you now, is that all right?",
        "I'm going to check your pulse and blood pressure now.",
        "May I listen to your chest and feel your tummy?",
    ),
    "plan": (
        "We'll do some blood tests and a few scans to find out what's causing this.",
        "I'm going to discuss this with my senior and we'll come back with a plan.",
        "We'll give you something for the symptoms and keep a close eye on you.",
    ),
}
MIDDLE_TOPICS = (
    "onset",
    "location",
    "radiation",
    "severity",
    "history",
    "medications",
    "allergies",
    "family",
    "social",
    "feeling",
)
STUDENT_OPENERS = ("", "Okay. ", "Thank you. ", "I see. ", "Right. ", "Thanks for telling me. ")
DEFAULT_VITALS = {
    "heart_rate": 80,
    "systolic_bp": 125,
    "diastolic_bp": 80,
    "spo2": 97,
    "respiratory_rate": 16,
    "temperature": 36.9,
}


def _tokens(text: str) -> int:
    return math.ceil(len(text.split()) * 1.3)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _join(items: list[str]) -> str:
    items = [str(i) for i in items] or ["nothing"]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _patient_answers(profile: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Patient replies per topic from a scenario's patient profile (missing keys tolerated)."""
    name = str(profile.get("name", "Sam Taylor"))
    age = profile.get("age", 40)
    cc = str(profile.get("chief_complaint", "I just don't feel well"))
    onset = str(profile.get("onset", "since yesterday"))
    pain = profile.get("pain") or {}
    location = str(pain.get("location", "all over"))
    radiation = str(pain.get("radiation", "none"))
    severity = int(pain.get("severity", 5))
    history = [str(h) for h in profile.get("history") or ["nothing serious"]]
    meds = [str(m) for m in profile.get("medications") or ["none"]]
    allergies = [str(a) for a in profile.get("allergies") or ["none known"]]
    family = str(profile.get("family_history", "nothing I know of"))
    social = str(profile.get("social", "nothing unusual"))
    mood = str(profile.get("mood", "worried"))
    no_meds = [m.lower() for m in meds] == ["none"]
    no_allergies = [a.lower() for a in allergies] in (["none known"], ["none"])
    return {
        "greeting": (
            f"I'm {name}, I'm {age}.",
            f"{name}. I'm {age} years old.",
            f"Hello. It's {name}, {age}.",
        ),
        "complaint": (f"{_cap(cc)}.", f"Well... {cc}.", f"{_cap(cc)}, and I'm really {mood}."),
        "onset": (f"{_cap(onset)}.", f"Let me think... {onset}.", f"{_cap(onset)}, I think."),
        "location": (f"Mostly {location}.", f"Right here... {location}.", f"It's {location}."),
        "radiation": (
            ("No, it stays in one place.", "Not really, just there.")
            if radiation.lower() == "none"
            else (f"Yes, it goes to my {radiation}.", f"Sometimes into my {radiation}.")
        ),
        "severity": (
            f"About {severity} out of 10.",
            f"I'd say {severity}, maybe {min(severity + 1, 10)}.",
            f"It's a {severity}. It was worse earlier.",
        ),
        "history": (f"I have {_join(history)}.", f"Let me see: {_join(history)}."),
        "medications": (
            ("No, I don't take any regular medicines.", "Nothing regular, no.")
            if no_meds
            else (f"I take {_join(meds)}.", f"Just {_join(meds)}.")
        ),
        "allergies": (
            ("Not that I know of.", "No allergies.")
            if no_allergies
            else (f"Yes: {_join(allergies)}.", f"I'm allergic to {_join(allergies)}.")
        ),
        "family": (f"{_cap(family)}.", f"Hmm, {family}."),
        "social": (f"{_cap(social)}.", f"Well, {social}."),
        "feeling": (
            f"Honestly, quite {mood}.",
            f"I'm feeling {mood}.",
            f"A bit {mood}, to be honest. Will I be all right?",
        ),
        "exam": ("Yes, go ahead.", "Okay, please be gentle.", "That's fine."),
        "plan": (
            "Thank you. What do you think it is?",
            "Okay. How long will that take?",
            "Thank you, doctor.",
        ),
    }


def phrasebook(profile: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """topic -> (student lines, patient lines, metadata prefix); lines carry their token counts."""
    answers = _patient_answers(profile)
    book = {}
    for topic, questions in QUESTIONS.items():
        openers = ("",) if topic in ("greeting", "complaint") else STUDENT_OPENERS
        student = [(o + q, _tokens(o + q)) for o in openers for q in questions]
        patient = [(a, _tokens(a)) for a in answers[topic]]
        book[topic] = (
            student,
            len(student),
            patient,
            len(patient),
            f'{{"topic": "{topic}", "latency_ms": ',
        )
    return book
