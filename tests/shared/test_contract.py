"""The committed JSON Schemas in docs/contract/ must match the models."""

from __future__ import annotations

import json
from pathlib import Path

from shared import contract

CONTRACT_DIR = Path(__file__).resolve().parents[2] / "docs" / "contract"
EXPECTED_FILES = {
    "availability.schema.json",
    "command.schema.json",
    "config-desired.schema.json",
    "event.schema.json",
    "telemetry.schema.json",
}
STALE = "docs/contract is out of date with shared/messages.py: run `frigo contract export`"


def test_render_names_every_schema() -> None:
    assert set(contract.render()) == EXPECTED_FILES


def test_committed_contract_matches_models() -> None:
    rendered = contract.render()
    committed = {path.name: path.read_text(encoding="utf-8") for path in CONTRACT_DIR.glob("*.schema.json")}
    assert set(committed) == set(rendered), STALE
    for name, text in rendered.items():
        assert committed[name] == text, f"{name}: {STALE}"


def test_rendered_schemas_are_json_objects_ending_with_newline() -> None:
    for name, text in contract.render().items():
        assert text.endswith("}\n"), name
        schema = json.loads(text)
        assert isinstance(schema, dict), name


def test_event_schema_is_discriminated_on_type() -> None:
    schema = json.loads(contract.render()["event.schema.json"])
    assert schema["discriminator"]["propertyName"] == "type"
    assert set(schema["discriminator"]["mapping"]) == {
        "item_added",
        "item_consumed",
        "item_opened",
        "item_moved",
        "item_discarded",
        "alert_raised",
        "alert_cleared",
        "offer_answered",
        "order_answered",
        "consent_changed",
        "config_applied",
        "data_wiped",
        "outbox_pressure",
        "event_batch",  # a backlog drains several events per message
    }


def test_export_writes_rendered_files(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "contract"
    written = contract.export(target)
    assert {path.name for path in written} == EXPECTED_FILES
    assert all(path.parent == target for path in written)
    rendered = contract.render()
    for path in written:
        assert path.read_text(encoding="utf-8") == rendered[path.name]
    assert {path.name for path in target.iterdir()} == EXPECTED_FILES


def test_export_overwrites_stale_files(tmp_path: Path) -> None:
    (tmp_path / "event.schema.json").write_text("stale", encoding="utf-8")
    contract.export(tmp_path)
    expected = contract.render()["event.schema.json"]
    assert (tmp_path / "event.schema.json").read_text(encoding="utf-8") == expected


def test_every_event_type_is_accepted_alone_and_in_a_batch() -> None:
    from typing import get_args

    from shared import messages

    def members(annotated: object) -> set[type]:
        union, _field = get_args(annotated)
        return set(get_args(union))

    subclasses = {
        cls
        for cls in vars(messages).values()
        if isinstance(cls, type) and issubclass(cls, messages.EventBase)
    }
    subclasses.discard(messages.EventBase)
    assert members(messages.Event) == subclasses
    assert members(messages.EventMessage) == subclasses | {messages.EventBatch}
