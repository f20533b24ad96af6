"""`glode figures`: Figures 3 and 4 are written as PNG from fake inputs."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from glode import figures
from glode.io import GlodeInputError, write_parquet

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def quality_files(root, targets=(("conll", "de"), ("wikiann", "hi")), seeds=(1, 2), epochs=3):
    base = root / "results" / "analysis" / "label_quality"
    files = []
    for dataset, lang in targets:
        for seed in seeds:
            files.append(write_json(base / dataset / lang / "source-mlm" / f"seed{seed}" / "initial.json", {"seqeval": {"f1": 0.60 + 0.01 * seed}}))
            for variant, gain in (("glode", 0.03), ("wo_denoising_local", 0.01), ("wo_denoising_global", 0.02), ("wo_mlm", 0.0)):
                for epoch in range(epochs):
                    f1 = 0.60 + gain * (epoch + 1) + 0.01 * seed
                    files.append(write_json(base / dataset / lang / variant / f"seed{seed}" / f"epoch{epoch}.json", {"seqeval": {"f1": f1}}))
    return files


def write_sentences(path, dataset, lang, split, tags):
    table = pa.table(
        {
            "sent_id": pa.array(range(len(tags)), pa.int64()),
            "line": pa.array([1 + 3 * i for i in range(len(tags))], pa.int64()),
            "tokens": pa.array([[f"w{j}" for j in range(len(t))] for t in tags], pa.list_(pa.string())),
            "tags": pa.array(tags, pa.list_(pa.string())),
        }
    )
    write_parquet(table, path, {"dataset": dataset, "lang": lang, "split": split, "labeled": True})
    return path


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 20_000  # a drawn multi-panel figure, not an empty canvas
    assert not list(path.parent.glob(f".{path.name}.*"))  # the temporary file was renamed away


def test_figure3_png(tmp_path):
    out = tmp_path / "fig" / "figure3.png"
    assert figures.main(["--figure", "3", "--quality", *map(str, quality_files(tmp_path)), "--out", str(out)]) == 0
    assert_png(out)


def test_quality_curves_mean_over_seeds_with_init(tmp_path):
    records = figures.load_quality(quality_files(tmp_path, targets=(("conll", "de"),), epochs=2))
    curves = figures.quality_curves(records, "source-mlm")
    assert list(curves) == [("conll", "de")]
    assert set(curves[("conll", "de")]) == {"glode", "wo_denoising_local", "wo_denoising_global"}  # wo_mlm is not plotted
    glode = curves[("conll", "de")]["glode"]
    assert [e for e, *_ in glode] == [figures.INITIAL_EPOCH, 0, 1]
    epoch, mean, std, n = glode[1]
    assert mean == pytest.approx(100 * (0.63 + 0.015)) and n == 2 and std == pytest.approx(0.7071, abs=1e-3)


def test_quality_path_errors(tmp_path):
    with pytest.raises(GlodeInputError, match="epoch<N>.json"):
        figures.parse_quality_path(tmp_path / "label_quality/conll/de/glode/seed1/final.json")
    with pytest.raises(GlodeInputError, match="initial.json under"):
        figures.parse_quality_path(tmp_path / "label_quality/conll/de/glode/seed1/initial.json")
    with pytest.raises(GlodeInputError, match="results layout"):
        figures.parse_quality_path(tmp_path / "conll/de/glode/seed1/epoch0.json")
    bad = write_json(tmp_path / "label_quality/conll/de/glode/seed1/epoch0.json", {"seqeval": {}})
    out = tmp_path / "f.png"
    with pytest.raises(GlodeInputError, match="seqeval.f1"):
        figures.main(["--figure", "3", "--quality", str(bad), "--out", str(out)])
    assert not out.exists()


def figure4_inputs(root):
    data = root / "results" / "data"
    sources = [
        write_sentences(data / "conll/en/train.parquet", "conll", "en", "train", [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-MISC"], ["B-PER"]]),
        write_sentences(data / "wikiann/en/train.parquet", "wikiann", "en", "train", [["B-PER", "O", "B-LOC"], ["B-ORG"]]),
    ]
    targets = [
        write_sentences(data / "conll/de/test.parquet", "conll", "de", "test", [["B-LOC", "O"], ["B-LOC", "B-PER"], ["O"]]),
        write_sentences(data / "wikiann/hi/test.parquet", "wikiann", "hi", "test", [["B-PER", "I-PER"], ["B-ORG", "O"]]),
    ]
    metrics = []
    for dataset, lang, types in (("conll", "de", ["LOC", "MISC", "ORG", "PER"]), ("wikiann", "hi", ["LOC", "ORG", "PER"])):
        for system, skew in (("source-plain", 0.0), ("source-mlm", 0.1)):
            for seed in (1, 2):
                weights = [1.0 + skew * i + 0.05 * seed for i in range(len(types))]
                distribution = {t: w / sum(weights) for t, w in zip(types, weights)}
                path = root / "results/eval" / dataset / lang / system / f"seed{seed}" / "metrics.json"
                metrics.append(write_json(path, {"seqeval": {"f1": 0.5}, "predicted_type_distribution": distribution}))
    return sources, targets, metrics


def test_figure4_png(tmp_path):
    sources, targets, metrics = figure4_inputs(tmp_path)
    out = tmp_path / "figure4.png"
    argv = ["--figure", "4", "--metrics", *map(str, metrics), "--source-sentences", *map(str, sources), "--target-sentences", *map(str, targets), "--out", str(out)]
    assert figures.main(argv) == 0
    assert_png(out)


def test_gold_distributions_and_errors(tmp_path):
    sources, targets, metrics = figure4_inputs(tmp_path)
    gold = figures.read_gold_distributions(targets)
    assert gold[("conll", "de")].percent() == pytest.approx({"LOC": 200 / 3, "PER": 100 / 3})
    assert gold[("wikiann", "hi")].splits == ["test"]
    predicted = figures.read_predicted_distributions(metrics)
    assert len(predicted[("conll", "de", "source-mlm")]) == 2
    assert sum(figures.mean_distribution(predicted[("conll", "de", "source-plain")]).values()) == pytest.approx(100.0)

    unlabeled = tmp_path / "results/data/conll/de/train.parquet"
    write_parquet(pa.table({"sent_id": pa.array([0], pa.int64()), "tokens": pa.array([["a"]], pa.list_(pa.string()))}), unlabeled, {"dataset": "conll", "lang": "de", "split": "train"})
    with pytest.raises(GlodeInputError, match="no `tags` column"):
        figures.read_gold_distributions([unlabeled])
    target_model = write_json(tmp_path / "results/eval/conll/de/target-glode/seed1/metrics.json", {"seqeval": {"f1": 0.5}, "predicted_type_distribution": {}})
    with pytest.raises(GlodeInputError, match="source-plain or source-mlm"):
        figures.read_predicted_distributions([target_model])
    no_distribution = write_json(tmp_path / "results/eval/conll/de/source-plain/seed9/metrics.json", {"seqeval": {"f1": 0.5}})
    with pytest.raises(GlodeInputError, match="predicted_type_distribution"):
        figures.read_predicted_distributions([no_distribution])


def test_variant_colors_are_distinct_and_keep_the_fixed_ones():
    from glode.figures import STRATEGY_COLORS, variant_colors

    variants = ["glode", "wo_denoising", "glode_authors", "wo_denoising_authors", "glode_authors_soft_o", "glode_authors_logits_loss"]
    variants += [f"mine_{i}" for i in range(12)]  # more than the spare colours: they repeat only then
    colors = variant_colors(variants)
    assert colors["glode"] == STRATEGY_COLORS["glode"] and colors["glode_authors"] == STRATEGY_COLORS["glode_authors"]
    first_eight_spares = [colors[v] for v in sorted(set(variants) - set(STRATEGY_COLORS))][:8]
    assert len(set(first_eight_spares)) == 8 and not set(first_eight_spares) & set(STRATEGY_COLORS.values())
    assert variant_colors(reversed(variants)) == colors  # the order given does not matter
