"""The string formats kube-apiserver enforces on custom resources (kube-openapi's strfmt.Default)."""

from __future__ import annotations

import time

import pytest

from kubesat.apimachinery.crdschema import formats


@pytest.mark.parametrize("fmt,good,bad", [
    ("date-time", ["2024-01-02T03:04:05Z", "2024-01-02t03:04:05.123+01:00", "2024-02-29T00:00:00Z"],
     ["2024-01-02", "2024-13-02T03:04:05Z", "2024-01-02T24:00:00Z", "2023-02-29T00:00:00Z", "x"]),
    ("date", ["2024-01-02"], ["2024-1-2", "2024-02-30", "02-01-2024"]),
    ("duration", ["1h30m", "1.5h", "-300ms", "0", "3 days", "2 weeks", "5µs"], ["", "1", "abc", "1 parsec"]),
    ("uuid", ["6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6BA7B8109DAD11D180B400C04FD430C8"], ["6ba7b810", "x"]),
    ("uuid4", ["f47ac10b-58cc-4372-a567-0e02b2c3d479"], ["6ba7b810-9dad-11d1-80b4-00c04fd430c8"]),
    ("ipv4", ["1.2.3.4", "01.002.3.4", "::ffff:1.2.3.4"], ["1.2.3", "256.1.1.1", "::1", "a.b.c.d"]),
    ("ipv6", ["::1", "2001:db8::1"], ["1.2.3.4", "fe80::1%eth0", ":::"]),
    ("cidr", ["10.0.0.0/8", "10.1.2.3/24", "2001:db8::/32"], ["10.0.0.0", "10.0.0.0/33", "2001:db8::/129"]),
    ("mac", ["01:23:45:67:89:ab", "01-23-45-67-89-AB", "0123.4567.89ab", "01:23:45:67:89:ab:cd:ef"],
     ["01:23:45:67:89", "01:23-45:67:89:ab", "0123.4567"]),
    ("hostname", ["example.com", "a", "my-host.example.org", "münchen.de", "☃.com"],
     ["-a.com", "a..com", "a.1", "a" * 64 + ".com", "a_b.com"]),
    ("email", ["a@b.c", "Name <a@b.c>", " a@b.c "], ["a", "a@", "@b.c"]),
    ("byte", ["aGVsbG8=", "aGk="], ["aGVsbG8", "!!!!"]),
    ("uri", ["https://example.com/x?y=1", "/relative/path", "mailto:a@b.c"], ["example.com", "http://a b", "%zz"]),
    ("hexcolor", ["#fff", "ABCDEF"], ["#ffff", "#ggg"]),
    ("rgbcolor", ["rgb(0, 128,255)"], ["rgb(256,0,0)", "rgb(1,2)"]),
    ("isbn10", ["0321751043", "0-321-75104-3"], ["0321751044"]),
    ("isbn13", ["978-0321751041"], ["978-0321751042"]),
    ("creditcard", ["4111 1111 1111 1111"], ["4111 1111 1111 1112"]),
    ("ssn", ["123-45-6789"], ["123456789", "12-345-6789"]),
    ("bsonobjectid", ["507f1f77bcf86cd799439011"], ["507f1f77bcf86cd79943901", "zz7f1f77bcf86cd799439011"]),
])
def test_formats(fmt: str, good: list[str], bad: list[str]) -> None:
    assert formats.is_supported(fmt)
    assert [g for g in good if not formats.valid(fmt, g)] == []
    assert [b for b in bad if formats.valid(fmt, b)] == []


def test_unsupported_formats_are_ignored_as_in_kubernetes() -> None:
    for fmt in ("int32", "int64", "float", "double", "int-or-string", "whatever"):
        assert not formats.is_supported(fmt)


def test_format_checks_are_linear_on_long_texts() -> None:
    start = time.monotonic()
    for fmt in ("duration", "email", "byte", "uri", "hostname", "date-time", "creditcard"):
        formats.valid(fmt, "1" * 200_000 + "!")
        formats.valid(fmt, " " * 200_000 + "!")
    assert time.monotonic() - start < 5
