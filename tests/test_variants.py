"""Variant discovery: the shipped catalogue, and the errors a bad variant gets at discovery time."""

import sys
import textwrap

import pytest

from harness.errors import ConfigError, RegistryError
from harness.variant import Variant, _from_package, catalogue, check_catalogue, get_variant, lineage

ROOT = Variant(name="root", axis="baseline", description="root")


def test_shipped_catalogue_has_the_baseline_and_deltas():
    variants = catalogue()
    assert variants["lynx"].baseline is None
    deltas = [v for v in variants.values() if v.baseline == "lynx"]
    assert len(deltas) >= 2
    assert variants["w_llama"].source == "variants/w_llama.py"


def test_lineage_runs_from_root_to_variant():
    assert [v.name for v in lineage("w_llama")] == ["lynx", "w_llama"]


def test_unknown_variant_suggests_the_closest_name():
    with pytest.raises(RegistryError, match=r"unknown variant 'w_lama' \(did you mean 'w_llama'\?\)"):
        get_variant("w_lama")


def test_duplicate_names_name_both_files():
    a = Variant(name="x", baseline="root", axis="a", description="", source="variants/a.py")
    b = Variant(name="x", baseline="root", axis="a", description="", source="variants/b.py")
    with pytest.raises(RegistryError, match=r"'x' is defined twice: in variants/a\.py and in variants/b\.py"):
        check_catalogue([ROOT, a, b])


def test_unknown_baseline_is_rejected():
    v = Variant(name="x", baseline="roto", axis="a", description="", source="variants/x.py")
    with pytest.raises(RegistryError, match=r"variants/x\.py: variant 'x' names unknown baseline 'roto' \(did you mean 'root'\?\)"):
        check_catalogue([ROOT, v])


def test_delta_key_that_does_not_exist_is_rejected():
    v = Variant(name="x", baseline="root", axis="a", description="", delta={"model.conector.kind": "mlp"},
                source="variants/x.py")
    with pytest.raises(ConfigError, match=r"variants/x\.py: variant 'x' delta: unknown config key 'model\.conector\.kind'"):
        check_catalogue([ROOT, v])


def test_baseline_cycle_is_rejected():
    a = Variant(name="a", baseline="b", axis="x", description="", source="variants/a.py")
    b = Variant(name="b", baseline="a", axis="x", description="", source="variants/b.py")
    with pytest.raises(RegistryError, match="baseline cycle"):
        check_catalogue([a, b])


def test_variant_file_that_raises_on_import_is_named(tmp_path, monkeypatch):
    pkg = tmp_path / "broken_variants"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "ok.py").write_text("from harness.variant import Variant\nV = Variant(name='ok', axis='a', description='')\n")
    (pkg / "bad.py").write_text(textwrap.dedent("""
        from harness.variant import Variant
        raise RuntimeError("boom")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError, match=r"broken_variants/bad\.py: variant file failed to import: RuntimeError: boom"):
        _from_package("broken_variants")
    sys.modules.pop("broken_variants", None)
