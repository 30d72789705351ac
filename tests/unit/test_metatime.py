"""metav1.Time / MicroTime text: what Go's time.Parse accepts with Kubernetes' layouts, the canonical form written,
and Go's words for what it refuses."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesat.apimachinery import fieldcheck, metatime
from kubesat.apimachinery.metatime import TimeParseError, canonical

LAYOUT = '"2006-01-02T15:04:05Z07:00"'
MICRO_LAYOUT = '"2006-01-02T15:04:05.000000Z07:00"'
POD = "io.k8s.api.core.v1.Pod"
LEASE = "io.k8s.api.coordination.v1.Lease"


@pytest.mark.parametrize(("text", "want"), [
    ("2026-12-03T10:00:00Z", "2026-12-03T10:00:00Z"),
    ("2026-12-03T10:00:00+00:00", "2026-12-03T10:00:00Z"),
    ("2026-12-03T10:00:00-00:00", "2026-12-03T10:00:00Z"),
    ("2026-12-03T10:00:00+05:30", "2026-12-03T04:30:00Z"),
    ("2026-12-03T22:30:00-03:00", "2026-12-04T01:30:00Z"),  # across midnight
    ("2024-12-31T23:00:00-01:00", "2025-01-01T00:00:00Z"),  # across a year
    ("2026-12-03T10:00:00.999999999Z", "2026-12-03T10:00:00Z"),  # fractions dropped, not rounded
    ("2026-12-03T10:00:00.5+01:00", "2026-12-03T09:00:00Z"),
    ("2026-12-03T10:00:00,5Z", "2026-12-03T10:00:00Z"),  # Go reads a comma as a decimal point too
    ("2026-12-03T10:00:00." + "1" * 40 + "Z", "2026-12-03T10:00:00Z"),
    ("2026-12-03T1:00:00Z", "2026-12-03T01:00:00Z"),  # Go's "15" takes a one-digit hour
    ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z"),
    ("2000-02-29T00:00:00Z", "2000-02-29T00:00:00Z"),
    ("1960-06-01T00:00:00Z", "1960-06-01T00:00:00Z"),  # before 1970 is a time like any other
    ("2026-12-03T10:00:00+24:00", "2026-12-02T10:00:00Z"),  # Go allows offsets up to 24 hours, 60 minutes
    ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00Z"),
    ("0001-01-01T00:00:00Z", None),  # Go's zero time: written as null
    ("0001-01-01T01:00:00+01:00", None),
    # Past what RFC 3339 writes once in UTC: the nearest time it can write (as kubesat's own timestamps).
    ("9999-12-31T23:00:00-02:00", "9999-12-31T23:59:59Z"),
    ("0000-01-01T00:00:00+01:00", "0000-01-01T00:00:00Z"),
])
def test_time_canonical(text: str, want: str | None) -> None:
    assert canonical(text) == want


@pytest.mark.parametrize(("text", "want"), [
    ("2026-12-03T10:00:00.123456Z", "2026-12-03T10:00:00.123456Z"),
    ("2026-12-03T10:00:00.123456+02:00", "2026-12-03T08:00:00.123456Z"),
    ("2026-12-03T10:00:00,000001-00:30", "2026-12-03T10:30:00.000001Z"),
    ("2026-12-03T10:00:00.+12345Z", "2026-12-03T10:00:00.012345Z"),  # Go's atoi takes a sign
    ("9999-12-31T23:00:00.000000-02:00", "9999-12-31T23:59:59.999999Z"),
])
def test_micro_time_canonical(text: str, want: str) -> None:
    assert canonical(text, micro=True) == want


def _cannot(text: str, elem: str, as_: str, layout: str = LAYOUT) -> str:
    return f'parsing time "{text}" as {layout}: cannot parse "{elem}" as "{as_}"'


@pytest.mark.parametrize(("text", "message"), [
    ("yesterday", _cannot("yesterday", "yesterday", "2006")),
    ("", _cannot("", "", "2006")),  # an empty string is no time in JSON (only in a query parameter)
    ("26-12-03T10:00:00Z", _cannot("26-12-03T10:00:00Z", "26-12-03T10:00:00Z", "2006")),
    ("+026-12-03T10:00:00Z", _cannot("+026-12-03T10:00:00Z", "+026-12-03T10:00:00Z", "2006")),
    ("2026/12/03T10:00:00Z", _cannot("2026/12/03T10:00:00Z", "/12/03T10:00:00Z", "-")),
    ("2026-12-03t10:00:00Z", _cannot("2026-12-03t10:00:00Z", "t10:00:00Z", "T")),  # lowercase t: refused
    ("2026-12-03T10:00:00z", _cannot("2026-12-03T10:00:00z", "z", "Z07:00")),  # lowercase z: refused
    ("2026-12-03 10:00:00Z", _cannot("2026-12-03 10:00:00Z", " 10:00:00Z", "T")),
    ("2026-12-03T10:00:00", _cannot("2026-12-03T10:00:00", "", "Z07:00")),  # no zone
    ("2026-12-03T10:00Z", _cannot("2026-12-03T10:00Z", "Z", ":")),
    ("2026-1-03T10:00:00Z", _cannot("2026-1-03T10:00:00Z", "1-03T10:00:00Z", "01")),
    ("2026-12-03T10:00:00.Z", _cannot("2026-12-03T10:00:00.Z", ".Z", "Z07:00")),
    ("2026-12-03T10:00:00+0100", _cannot("2026-12-03T10:00:00+0100", "+0100", "Z07:00")),
    ("2026-12-03T10:00:00 01:00", _cannot("2026-12-03T10:00:00 01:00", " 01:00", "Z07:00")),
    ("2026-13-45T99:00:00Z", 'parsing time "2026-13-45T99:00:00Z": month out of range'),
    ("2026-00-10T00:00:00Z", 'parsing time "2026-00-10T00:00:00Z": month out of range'),
    ("2026-02-29T00:00:00Z", 'parsing time "2026-02-29T00:00:00Z": day out of range'),
    ("1900-02-29T00:00:00Z", 'parsing time "1900-02-29T00:00:00Z": day out of range'),
    ("2026-04-31T00:00:00Z", 'parsing time "2026-04-31T00:00:00Z": day out of range'),
    ("2026-04-00T00:00:00Z", 'parsing time "2026-04-00T00:00:00Z": day out of range'),
    ("2026-12-03T24:00:00Z", 'parsing time "2026-12-03T24:00:00Z": hour out of range'),
    ("2026-12-03T10:60:00Z", 'parsing time "2026-12-03T10:60:00Z": minute out of range'),
    ("2026-12-03T23:59:60Z", 'parsing time "2026-12-03T23:59:60Z": second out of range'),  # no leap seconds
    ("2026-12-03T10:00:00+25:00", 'parsing time "2026-12-03T10:00:00+25:00": time zone offset hour out of range'),
    ("2026-12-03T10:00:00+01:61", 'parsing time "2026-12-03T10:00:00+01:61": time zone offset minute out of range'),
    ("2026-12-03T10:00:00Zjunk", 'parsing time "2026-12-03T10:00:00Zjunk": extra text: "junk"'),
    ("2026-12-03T10:00:00Z ", 'parsing time "2026-12-03T10:00:00Z ": extra text: " "'),
    ('20"6\\', _cannot('20\\"6\\\\', '20\\"6\\\\', "2006")),
    ("é2026", _cannot("\\xc3\\xa92026", "\\xc3\\xa92026", "2006")),
    ("2026\n", _cannot("2026\\x0a", "\\x0a", "-")),
])
def test_time_refused_in_go_words(text: str, message: str) -> None:
    with pytest.raises(TimeParseError) as e:
        canonical(text)
    assert str(e.value) == message


@pytest.mark.parametrize(("text", "message"), [
    ("2026-12-03T10:00:00Z", _cannot("2026-12-03T10:00:00Z", "Z", ".000000", MICRO_LAYOUT)),
    ("2026-12-03T10:00:00+00:00", _cannot("2026-12-03T10:00:00+00:00", "+00:00", ".000000", MICRO_LAYOUT)),
    ("2026-12-03T10:00:00.123Z", _cannot("2026-12-03T10:00:00.123Z", ".123Z", ".000000", MICRO_LAYOUT)),
    ("2026-12-03T10:00:00.1234567Z", _cannot("2026-12-03T10:00:00.1234567Z", "7Z", "Z07:00", MICRO_LAYOUT)),
    ("2026-12-03T10:00:00.-12345Z", 'parsing time "2026-12-03T10:00:00.-12345Z": fractional second out of range'),
])
def test_micro_time_wants_six_digits(text: str, message: str) -> None:
    with pytest.raises(TimeParseError) as e:
        canonical(text, micro=True)
    assert str(e.value) == message


def test_very_long_strings_are_quick() -> None:
    started = time.perf_counter()
    with pytest.raises(TimeParseError) as e:
        canonical("2026-12-03T10:00:00Z" + "x" * 1_000_000)
    assert str(e.value).endswith('extra text: "' + "x" * 1_000_000 + '"')  # Go quotes it all
    with pytest.raises(TimeParseError):
        canonical("9" * 1_000_000)
    assert canonical("2026-12-03T10:00:00." + "1" * 1_000_000 + "Z") == "2026-12-03T10:00:00Z"  # any digits
    assert time.perf_counter() - started < 1.0


def test_is_canonical_and_its_cache() -> None:
    assert metatime.is_canonical("2026-12-03T10:00:00Z")
    assert metatime.is_canonical("2026-12-03T10:00:00Z")  # a second time: from the cache
    assert not metatime.is_canonical("2026-12-03T10:00:00+00:00")
    assert not metatime.is_canonical("2026-12-03T10:00:00Z", micro=True)
    assert metatime.is_canonical("2026-12-03T10:00:00.000000Z", micro=True)
    assert not metatime.is_canonical("0001-01-01T00:00:00Z")  # written as null
    assert not metatime.is_canonical("2026-02-30T00:00:00Z")
    assert not metatime.is_canonical(1764756000)
    assert not metatime.is_canonical(None)


def test_protobuf_timestamps() -> None:
    assert metatime.format_parts(1764756000, 999_999_999, micro=False) == "2025-12-03T10:00:00Z"
    assert metatime.format_parts(1764756000, 123_456_789, micro=True) == "2025-12-03T10:00:00.123456Z"
    assert metatime.format_parts(-62135596800, 0, micro=False) is None
    assert metatime.format_parts(-1, 0, micro=False) == "1969-12-31T23:59:59Z"


@pytest.mark.parametrize(("value", "message"), [
    (1764756000, "json: cannot unmarshal number into Go struct field PodCondition.status.conditions.lastTransitionTime "
                 "of type string"),
    (True, "json: cannot unmarshal bool into Go struct field PodCondition.status.conditions.lastTransitionTime "
           "of type string"),
    ({"seconds": 1}, "json: cannot unmarshal object into Go struct field PodCondition.status.conditions."
                     "lastTransitionTime of type string"),
    (["2026-12-03T10:00:00Z"], "json: cannot unmarshal array into Go struct field PodCondition.status.conditions."
                               "lastTransitionTime of type string"),
    ("yesterday", 'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"'),
])
def test_field_check_refuses_what_is_no_time(value: object, message: str) -> None:
    pod = {"metadata": {"name": 5},  # a type error before it: the time's error is still the one reported
           "status": {"conditions": [{"type": "Ready", "lastTransitionTime": value}]}}
    assert fieldcheck.fitting_keys(pod, POD) == -1
    assert fieldcheck.type_errors(pod, POD)[0] == message


def test_field_check_rewrites_times_in_place() -> None:
    pod: dict[str, Any] = {"metadata": {"name": "p", "creationTimestamp": "2026-12-03T10:00:00+01:00"},
           "status": {"startTime": "2026-12-03T10:00:00.5Z", "conditions": [
               {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-03T10:00:00-01:00"},
               {"type": "Initialized", "status": "True", "lastTransitionTime": None}],
               "containerStatuses": [{"name": "c", "state": {"running": {"startedAt": "2026-12-03T12:00:00+02:00"}}}]}}
    assert fieldcheck.fitting_keys(pod, POD) == -1  # not canonical: the slow walk
    assert fieldcheck.type_errors(pod, POD) == []
    assert pod["metadata"]["creationTimestamp"] == "2026-12-03T09:00:00Z"
    assert pod["status"]["startTime"] == "2026-12-03T10:00:00Z"
    assert [c["lastTransitionTime"] for c in pod["status"]["conditions"]] == ["2026-12-03T11:00:00Z", None]
    assert pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"] == "2026-12-03T10:00:00Z"
    assert fieldcheck.fitting_keys(pod, POD) > 0  # canonical now: the fast check passes
    lease = {"spec": {"renewTime": "2026-12-03T10:00:00.1234567+00:00"}}
    assert fieldcheck.type_errors(lease, LEASE)[0].endswith('cannot parse "7+00:00" as "Z07:00"')
    lease = {"spec": {"renewTime": "2026-12-03T10:00:00.123456+01:00", "acquireTime": "2026-12-03T10:00:00.000000Z"}}
    assert fieldcheck.type_errors(lease, LEASE) == []
    assert lease["spec"] == {"renewTime": "2026-12-03T09:00:00.123456Z", "acquireTime": "2026-12-03T10:00:00.000000Z"}


@given(st.integers(0, 9999), st.integers(1, 12), st.integers(1, 31), st.integers(0, 23), st.integers(0, 59),
       st.integers(0, 59), st.one_of(st.none(), st.text("0123456789", min_size=1, max_size=12)),
       st.one_of(st.just("Z"), st.tuples(st.sampled_from("+-"), st.integers(0, 24), st.integers(0, 60))),
       st.booleans())
def test_the_quick_path_agrees_with_the_byte_by_byte_reading(year: int, month: int, day: int, hour: int, minute: int,
                                                             second: int, fraction: str | None, zone: Any,
                                                             micro: bool) -> None:
    zone_text = zone if zone == "Z" else f"{zone[0]}{zone[1]:02d}:{zone[2]:02d}"
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    text += ("." + fraction if fraction is not None else "") + zone_text
    try:
        want: int | str = metatime._parse_slowly(text, micro)
    except TimeParseError as e:
        want = str(e)
    try:
        got: int | str = metatime.parse(text, micro)
    except TimeParseError as e:
        got = str(e)
    assert got == want
