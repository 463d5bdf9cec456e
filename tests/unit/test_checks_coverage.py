"""Every checklist item of both seeds maps to an existing step; the coverage doc is generated from that map."""

from pathlib import Path

import pytest

from k2cli.checks import coverage
from k2cli.checks.checklists import CHECKLISTS, every_checklist
from k2cli.checks.context import Options
from k2cli.checks.model import Status
from k2cli.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path("/work/shared/seeds")


def seed_items():
    for seed, (name, _) in coverage.SEEDS.items():
        for section, text in coverage.parse_items((coverage.seeds_dir() / name).read_text()):
            yield seed, section, text


def test_the_seed_copies_are_unchanged():
    for name, _ in coverage.SEEDS.values():
        copy = coverage.seeds_dir() / name
        assert copy.is_file(), f"docs/seeds/{name} is missing"
        if SHARED.is_dir():  # the operators' originals, where this checkout can see them
            assert copy.read_bytes() == (SHARED / name).read_bytes(), f"docs/seeds/{name} differs from the seed"


def test_parser_finds_every_checklist_line_outside_code():
    items = list(seed_items())
    assert len(items) == 120  # 43 in seed 000 (39 `- [ ]` + 4 `- [x]`), 77 in seed 003
    assert ("000", "Quick Validation", "Connection successful") in items
    assert ("003", "Pre-Implementation Validation", "Baseline Metrics Captured") in items  # bold stripped
    # a shell comment inside a code block is not a heading
    assert all(not section.startswith("Run consumer") for _, section, _ in items)


def test_every_seed_item_is_mapped_and_nothing_else_is():
    mapped = {(i.seed, i.section, i.text) for i in coverage.ITEMS}
    found = set(seed_items())
    assert found - mapped == set(), "seed items without a step"
    assert mapped - found == set(), "mapped items that are not in the seeds"
    assert len(coverage.ITEMS) == len(mapped), "an item is mapped twice"


def test_every_mapped_step_exists():
    index = coverage.step_index()
    for item in coverage.ITEMS:
        assert item.steps, item
        for step_id in item.steps:
            assert step_id in index, f"{item.text!r} maps to missing step {step_id}"


def test_manual_steps_say_why_and_what_to_check():
    for checklist in every_checklist():
        for step in checklist.steps:
            if step.manual is not None:
                assert len(step.manual.reason) > 20 and len(step.manual.check) > 20, step.id
            if step.kind == "manual":
                assert step.manual is not None


def test_coverage_doc_is_generated_from_the_map():
    doc = ROOT / "docs" / "validation-coverage.md"
    assert doc.read_text() == coverage.markdown(), "run: k2 validate coverage --format markdown > " \
                                                   "docs/validation-coverage.md"
    for item in coverage.ITEMS:
        assert item.text.replace("|", "\\|") in doc.read_text()


def test_rows_report_kind_per_item():
    rows = {(r["section"], r["item"]): r for r in coverage.rows()}
    assert rows[("Post-Deployment Checklist", "Grafana dashboards showing expected behavior")]["kind"] == "manual"
    assert rows[("Quick Validation", "Connection successful")]["kind"] == "auto"
    assert rows[("Step 07: 24h Soak Test Implementation", "Memory growth <50MB over 24h")]["manual"]


def test_step_ids_are_unique_and_prefixed_by_their_checklist():
    seen = {}
    for checklist in every_checklist():
        for step in checklist.steps:
            assert step.id.startswith(checklist.name + "."), step.id
            assert seen.setdefault(step.id, checklist.name) == checklist.name


def test_checklist_catalogue():
    assert set(CHECKLISTS) == {"prereqs", "e2e", "streaming", "resilience", "deploy", "tech-debt"}
    assert CHECKLISTS["deploy"].build(Options(phase="pre")).name == "deploy-pre"
    assert CHECKLISTS["deploy"].build(Options(phase="post")).name == "deploy-post"
    with pytest.raises(ConfigError, match="--pre or --post"):
        CHECKLISTS["deploy"].build(Options())
    assert Status.MANUAL.value == "MANUAL"


def test_every_threshold_is_used_by_a_step():
    from k2cli.checks import thresholds
    from k2cli.checks.checklists import streaming
    from k2cli.exchanges import registry

    checklists = [*every_checklist(), *(streaming.build(Options(exchange=name)) for name in registry.names())]
    listed = {name for c in checklists for s in c.steps for name in s.thresholds}
    assert listed <= set(thresholds.THRESHOLDS), "a step lists an unknown threshold"
    assert set(thresholds.THRESHOLDS) - listed == set(), "thresholds no step uses"
