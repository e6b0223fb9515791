"""Warnings from the service, in the shapes it may use, end up on the right row and field."""

from __future__ import annotations

from modelberth_ui.notices import Notice, notices_by_row

FEATURES = ["petal", "petal_length"]


def test_flat_objects_name_their_row_and_feature() -> None:
    raw = [
        {"row": 1, "feature": "petal_length", "kind": "out_of_range", "detail": "outside the training range"},
        {"row": 0, "feature": "petal", "kind": "unseen_category"},
    ]
    assert notices_by_row(raw, 2, FEATURES) == [
        [Notice("petal", "unseen category")],
        [Notice("petal_length", "outside the training range")],
    ]


def test_per_instance_lists_and_text_mentioning_a_feature() -> None:
    raw = [["petal_length: above the training maximum"], []]
    # The longest matching name wins, so "petal_length" is not taken for "petal".
    assert notices_by_row(raw, 2, FEATURES) == [
        [Notice("petal_length", "petal_length: above the training maximum")],
        [],
    ]


def test_a_single_row_takes_unnamed_warnings_and_odd_shapes_are_ignored() -> None:
    assert notices_by_row(["model is old"], 1, FEATURES) == [[Notice(None, "model is old")]]
    assert notices_by_row({"not": "a list"}, 1, FEATURES) == [[]]
    assert notices_by_row([{"row": 7, "msg": "x"}], 2, FEATURES) == [[], []]
