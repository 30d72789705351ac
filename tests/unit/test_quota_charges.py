"""The ResourceQuota admission's charges in flight, as the quota controller sees them."""

from __future__ import annotations

from kubesat.auth.quotacharges import QuotaCharges


def test_a_charge_in_flight_holds_recounts_back_until_settled() -> None:
    charges = QuotaCharges()
    before = charges.settled("ns")
    assert before == 0
    first, second = charges.begin("ns"), charges.begin("ns")
    assert charges.settled("ns") is None and charges.settled("other") == 0
    first.settle(True)
    assert charges.settled("ns") is None
    second.settle(True)
    second.settle(False)  # only the first answer counts
    after = charges.settled("ns")
    assert after is not None and after != before  # a recount begun before these charges must start over


def test_only_a_written_charge_that_was_never_stored_asks_for_a_recount() -> None:
    charges = QuotaCharges()
    asked: list[str] = []
    charges.on_abandoned = asked.append
    refused = charges.begin("ns")
    refused.settle(False)  # refused before any quota was written: nothing to release
    stored = charges.begin("ns")
    stored.written = True
    stored.settle(True)
    failed = charges.begin("ns")
    failed.written = True
    failed.settle(False)  # charged, then the create failed: the controller recounts
    assert asked == ["ns"]


def test_namespaces_share_a_bounded_set_of_locks() -> None:
    charges = QuotaCharges()
    locks = {id(charges.lock(f"ns-{i}")) for i in range(1000)}
    assert len(locks) <= 64 and charges.lock("a") is charges.lock("a")
