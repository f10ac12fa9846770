"""The profile directory: ConfigMap layout, reloads, last-known-good, selection rules."""

from __future__ import annotations

from pathlib import Path

from nodeagent.daemon.profiles import ProfileStore, labels_match
from tests.support.serve import configmap_dir


def profile(name: str, selector: dict[str, str] | None = None, extra: str = "") -> str:
    match = "" if selector is None else "  nodeSelector: {matchLabels: {" + \
        ", ".join(f"{k}: {v}" for k, v in selector.items()) + "}}\n"
    return (f"apiVersion: nodeagent.io/v1alpha1\nkind: NodeProfile\nmetadata: {{name: {name}}}\nspec:\n{match}"
            f"  ksm: {{enabled: false}}\n{extra}")


def test_loads_a_configmap_volume_skipping_its_internals_and_other_files(tmp_path: Path) -> None:
    directory = configmap_dir(tmp_path / "p", {"b.yaml": profile("b"), "a.yml": profile("a"), "README": "x"})
    (directory / ".hidden.yaml").write_text(profile("hidden"))
    store = ProfileStore(str(directory))
    result = store.reload()
    assert result.errors == {}
    assert [p.file for p in store.profiles] == ["a.yml", "b.yaml"]  # file-name order
    assert [p.name for p in store.profiles] == ["a", "b"]


def test_a_configmap_swap_is_noticed_and_reloaded(tmp_path: Path) -> None:
    directory = configmap_dir(tmp_path / "p", {"a.yaml": profile("a", {"pool": "x"})})
    store = ProfileStore(str(directory))
    store.reload()
    assert not store.changed()
    configmap_dir(directory, {"a.yaml": profile("a", {"pool": "y"}), "c.yaml": profile("c")}, generation=2)
    assert store.changed()
    assert store.reload().changed
    assert [(p.file, p.profile.node_selector) for p in store.profiles] == [("a.yaml", {"pool": "y"}), ("c.yaml", {})]
    assert not store.changed()
    assert not store.reload().changed


def test_an_edit_that_breaks_a_file_keeps_its_last_good_version(tmp_path: Path) -> None:
    directory = configmap_dir(tmp_path / "p", {"a.yaml": profile("a", {"pool": "x"})})
    store = ProfileStore(str(directory))
    store.reload()
    good = store.profiles[0]
    configmap_dir(directory, {"a.yaml": profile("a", {"pool": "x"}, "  hugepages: {pages: [{sise: 2Mi}]}\n")},
                  generation=2)
    result = store.reload()
    assert store.profiles == (good,)
    assert "sise" in result.errors["a.yaml"] and "keeping the previous version" in result.errors["a.yaml"]
    configmap_dir(directory, {"a.yaml": profile("a", {"pool": "z"})}, generation=3)
    assert store.reload().errors == {}
    assert store.profiles[0].profile.node_selector == {"pool": "z"}


def test_an_invalid_file_on_first_load_is_skipped_and_reported(tmp_path: Path) -> None:
    directory = configmap_dir(tmp_path / "p", {"a.yaml": "kind: [", "b.yaml": profile("b")})
    store = ProfileStore(str(directory))
    result = store.reload()
    assert [p.file for p in store.profiles] == ["b.yaml"]
    assert "not valid YAML" in result.errors["a.yaml"]


def test_a_vanished_directory_keeps_the_profiles_it_had(tmp_path: Path) -> None:
    directory = configmap_dir(tmp_path / "p", {"a.yaml": profile("a")})
    store = ProfileStore(str(directory))
    store.reload()
    directory.rename(tmp_path / "gone")
    result = store.reload()
    assert [p.file for p in store.profiles] == ["a.yaml"]
    assert "<directory>" in result.errors


def test_selection_first_by_file_name_the_rest_are_conflicts(tmp_path: Path) -> None:
    directory = configmap_dir(tmp_path / "p", {
        "10-gpu.yaml": profile("gpu", {"pool": "gpu"}),
        "20-gpu-h100.yaml": profile("gpu-h100", {"pool": "gpu", "model": "h100"}),
        "30-db.yaml": profile("db", {"pool": "db"}),
    })
    store = ProfileStore(str(directory))
    store.reload()
    selection = store.select(labels_match({"pool": "gpu", "model": "h100"}))
    assert selection.profile is not None and selection.profile.name == "gpu"
    assert [p.name for p in selection.conflicts] == ["gpu-h100"]
    assert "also matching, ignored: gpu-h100 (20-gpu-h100.yaml)" in selection.describe()
    only = store.select(labels_match({"pool": "db"}))
    assert only.profile is not None and only.profile.name == "db" and not only.conflicts
    none = store.select(labels_match({"pool": "web"}))
    assert none.profile is None and "observe only" in none.describe()


def test_an_empty_selector_selects_every_node(tmp_path: Path) -> None:
    directory = configmap_dir(tmp_path / "p", {"all.yaml": profile("all")})
    store = ProfileStore(str(directory))
    store.reload()
    selected = store.select(labels_match({}))
    assert selected.profile is not None and selected.profile.name == "all"


def test_no_directory_means_no_profiles() -> None:
    store = ProfileStore(None)
    assert not store.reload().changed
    assert store.profiles == () and not store.changed()
