"""The model card contract: what inference relies on when it loads an artifact."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from modelberth_core import contract


def test_tiny_artifact_round_trips_and_latest_points_at_it(tiny_model_dir: Path) -> None:
    version = contract.resolve_latest(tiny_model_dir, "iris")
    assert version is not None
    card = contract.read_card(tiny_model_dir / "iris" / version)
    assert card.name == "iris"
    assert card.feature_names == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert contract.verify_checksum(tiny_model_dir / "iris" / version, card).name == contract.MODEL_FILE
    assert contract.list_models(tiny_model_dir) == ["iris"]


def test_checksum_mismatch_is_refused(tiny_model_dir: Path) -> None:
    version_dir = tiny_model_dir / "iris" / str(contract.resolve_latest(tiny_model_dir, "iris"))
    card = contract.read_card(version_dir)
    with (version_dir / contract.MODEL_FILE).open("ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(contract.ContractError, match="does not match"):
        contract.verify_checksum(version_dir, card)


def test_unknown_schema_version_is_refused(tiny_model_dir: Path) -> None:
    version_dir = tiny_model_dir / "iris" / str(contract.resolve_latest(tiny_model_dir, "iris"))
    raw = json.loads((version_dir / contract.CARD_FILE).read_text())
    raw["schema_version"] = contract.SCHEMA_VERSION + 1
    (version_dir / contract.CARD_FILE).write_text(json.dumps(raw))
    with pytest.raises(contract.ContractError, match="schema_version"):
        contract.read_card(version_dir)


def test_new_version_moves_latest_and_keeps_the_old_one(
    tiny_model_dir: Path, artifact_factory: Callable[..., Path]
) -> None:
    first = contract.resolve_latest(tiny_model_dir, "iris")
    second_dir = artifact_factory(tiny_model_dir)
    assert contract.resolve_latest(tiny_model_dir, "iris") == second_dir.name != first
    assert contract.list_versions(tiny_model_dir, "iris") == sorted([str(first), second_dir.name])


def test_latest_falls_back_to_newest_when_pointer_is_missing(tiny_model_dir: Path) -> None:
    version = contract.resolve_latest(tiny_model_dir, "iris")
    (tiny_model_dir / "iris" / contract.LATEST_FILE).unlink()
    assert contract.resolve_latest(tiny_model_dir, "iris") == version


def test_failed_staging_leaves_nothing_behind(tmp_path: Path) -> None:
    def train_and_fail() -> None:
        with contract.staging_dir(tmp_path, "iris") as staged:
            (staged / contract.MODEL_FILE).write_bytes(b"x")
            raise RuntimeError("training failed")

    with pytest.raises(RuntimeError, match="training failed"):
        train_and_fail()
    assert list((tmp_path / "iris").iterdir()) == []
    assert contract.resolve_latest(tmp_path, "iris") is None


def test_checked_in_json_schema_is_current() -> None:
    schema_file = Path(__file__).resolve().parents[1] / "model.schema.json"
    expected = json.dumps(contract.card_json_schema(), indent=2, sort_keys=True) + "\n"
    assert schema_file.read_text(encoding="utf-8") == expected, "run `make schema` and commit the result"


GOLDEN_V1 = Path(__file__).resolve().parent / "golden" / "model-v1.json"


def test_a_version_one_card_as_the_trainer_wrote_it_still_reads() -> None:
    """Inference keeps loading artifacts trained before the card's `champion` became `selected`."""
    raw = json.loads(GOLDEN_V1.read_text(encoding="utf-8"))
    card = contract.ModelCard.model_validate_json(GOLDEN_V1.read_bytes())
    assert raw["schema_version"] == card.schema_version == 1
    assert card.selected.model_dump() == raw["champion"]
    assert card.gate is None
    assert card.feature_names == [f["name"] for f in raw["features"]]


def test_a_card_naming_both_champion_and_selected_is_refused() -> None:
    raw = json.loads(GOLDEN_V1.read_text(encoding="utf-8"))
    raw["selected"] = raw["champion"]
    with pytest.raises(ValueError, match="champion"):
        contract.ModelCard.model_validate(raw)


def test_new_cards_follow_the_checked_in_schema(tiny_model_dir: Path) -> None:
    """What the writer produces now is what model.schema.json documents: `selected`, schema version 2."""
    import jsonschema

    version_dir = next(p for p in (tiny_model_dir / "iris").iterdir() if p.is_dir() and p.name[0].isdigit())
    raw = json.loads((version_dir / contract.CARD_FILE).read_text(encoding="utf-8"))
    assert raw["schema_version"] == contract.SCHEMA_VERSION == 2
    assert "selected" in raw
    assert "champion" not in raw
    schema = json.loads((Path(__file__).resolve().parents[1] / "model.schema.json").read_text())
    jsonschema.validate(raw, schema)
    old = json.loads(GOLDEN_V1.read_text(encoding="utf-8"))
    with pytest.raises(jsonschema.ValidationError):  # the schema documents what is written now
        jsonschema.validate(old, schema)
