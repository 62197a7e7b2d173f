"""The simulated patient: deterministic keyword-driven replies and storable vitals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrops.sim.catalog import CATALOG
from emrops.sim.patient import VITAL_LIMITS, VitalsStream, baseline, classify, reply

CHEST = CATALOG[0]["patient_profile"]
ASTHMA = CATALOG[1]["patient_profile"]


@pytest.mark.parametrize(
    ("question", "topic", "expected"),
    [
        ("Hello, I'm Dr Okafor", "greeting", "Robert Miller"),
        ("Where exactly is the pain?", "pain", "left arm and jaw"),
        ("When did this start?", "onset", "forty minutes ago"),
        ("Any past medical history?", "history", "type 2 diabetes"),
        ("What medication do you take?", "medications", "metformin"),
        ("Do you have any allergies?", "allergies", "enicillin"),
        ("Any illness in your family?", "family", "ather died of a heart attack"),
        ("Do you smoke or drink alcohol?", "social", "lorry driver"),
        ("What brings you in today?", "complaint", "crushing pain"),
    ],
)
def test_reply_answers_from_the_profile(question: str, topic: str, expected: str) -> None:
    answer = reply(CHEST, question)
    assert answer.topic == topic
    assert expected in answer.text


def test_same_question_same_reply_and_wording_varies() -> None:
    first = reply(CHEST, "Where is the pain?")
    assert reply(CHEST, "Where is the pain?") == first
    assert reply(CHEST, "  where   IS the pain? ") == first  # normalised before hashing
    variants = {reply(CHEST, f"Where is the pain, question {i}?").text for i in range(30)}
    assert len(variants) >= 3  # three templates (and mood openers) are all used


def test_unknown_question_falls_back_and_odd_profiles_do_not_break() -> None:
    assert classify("What's the capital of France?") == "fallback"
    assert reply(ASTHMA, "What's the capital of France?").topic == "fallback"
    odd = {"pain": "not a mapping", "history": "asthma", "medications": None, "mood": 7}
    for question in ("hello", "where is the pain", "medications?", "history", "family?"):
        assert reply(odd, question).text
    assert reply({}, "any allergies?").text.endswith("None known.")


def test_vitals_stream_stays_near_baseline_and_is_deterministic() -> None:
    samples = [VitalsStream(CHEST, seed=42).next() for _ in range(2)]
    assert samples[0] == samples[1]
    stream = VitalsStream(CHEST, seed=1)
    values = [stream.next() for _ in range(200)]
    mean_hr = sum(v["heart_rate"] for v in values) / len(values)
    assert abs(mean_hr - CHEST["vitals_baseline"]["heart_rate"]) < 8
    assert all(isinstance(v["heart_rate"], int) for v in values)
    assert all(isinstance(v["temperature"], float) for v in values)
    assert len({v["heart_rate"] for v in values}) > 3  # live, not a constant


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(VITAL_LIMITS)),
        st.one_of(st.floats(allow_nan=True, allow_infinity=False), st.integers(), st.text()),
    ),
    st.integers(),
)
def test_vitals_always_fit_the_table_checks(raw_baseline: dict, seed: int) -> None:
    stream = VitalsStream({"vitals_baseline": raw_baseline}, seed=seed)
    for _ in range(5):
        sample = stream.next()
        for key, (low, high) in VITAL_LIMITS.items():
            assert low <= sample[key] <= high, (key, sample)
        assert sample["diastolic_bp"] <= max(sample["systolic_bp"] - 10, 0)


def test_baseline_fills_gaps_with_adult_defaults() -> None:
    assert baseline({"vitals_baseline": {"heart_rate": 500}})["heart_rate"] == 300
    assert baseline({})["spo2"] == 98
