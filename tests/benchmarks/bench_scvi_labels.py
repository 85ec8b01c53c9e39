"""How much of each cell type scVI's label-conditioned draws carry, against the SCANVI stage's length.

The data are prepared as a suite prepares them; `scvi` is fitted with the suite's `[params.scvi]` and each
`--scanvi-epochs` value (over which `--fixed` goes). For every fit, one cell is drawn per real test cell, with
that cell's label, and three label-level figures are printed:

- `label acc`: a logistic regression trained on the real training cells (log1p of counts normalised to 10,000,
  PCA to 50) predicts each generated cell's label; the share it gets right (the real test cells' share beside
  it is the ceiling);
- `dev corr`: per label, the correlation over genes of the label's mean log expression minus the overall mean,
  generated against real test cells; the mean over labels, weighted by test cells, and the smallest;
- `encoded`: the same two figures for z1 from encoding the real training cells of each label (posterior means,
  decoded with their own library sizes): what the decoder can show when z1 is right, whatever the prior.

    python tests/benchmarks/bench_scvi_labels.py --data pbmc68k-mini --scanvi-epochs 10 100
    python tests/benchmarks/bench_scvi_labels.py --data /work/shared/data/mouse_bladder_2100.h5ad --labels label \\
        --scanvi-epochs 10 200

Not collected by pytest (its name does not start with test_). Needs `pip install "scldbench[scvi]"`.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from suite_data import add_data_arguments, prepared_as_suite


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(ap, suite_help="suite whose preparation and [params.scvi] are used")
    ap.add_argument("--scanvi-epochs", type=int, nargs="+", default=[10], help="SCANVI epochs to compare")
    ap.add_argument("--fixed", default="{}", help="scvi parameters as JSON, over the suite's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args()


def label_figures(generated: Any, labels: Any, real: Any, real_labels: Any, classifier: Any) -> dict[str, float]:
    """Label accuracy of `generated` cells and their per-label deviation correlation with `real` cells."""
    import numpy as np

    accuracy = float(np.mean(classifier.predict(generated) == labels))
    overall_g, overall_r = generated.mean(0), real.mean(0)
    corrs, weights = [], []
    for lab in np.unique(real_labels):
        if not np.any(labels == lab):
            continue
        dev_g = generated[labels == lab].mean(0) - overall_g
        dev_r = real[real_labels == lab].mean(0) - overall_r
        corrs.append(float(np.corrcoef(dev_g, dev_r)[0, 1]))
        weights.append(int(np.sum(real_labels == lab)))
    return {"label_accuracy": accuracy, "dev_corr_mean": float(np.average(corrs, weights=weights)),
            "dev_corr_min": float(np.min(corrs))}


def encoded_draws(model: Any, train: Any, labels: Any) -> Any:
    """Counts decoded from the posterior means of the training cells (their own library sizes)."""
    import numpy as np
    import scipy.sparse as sp
    import torch

    module = model.module_.eval()
    x = torch.as_tensor(train.X.toarray() if sp.issparse(train.X) else np.asarray(train.X), dtype=torch.float32)
    codes = torch.as_tensor([model.label_codes_[str(lab)] for lab in labels]).unsqueeze(1)
    batch = torch.zeros(x.shape[0], 1, dtype=torch.long)
    with torch.no_grad():
        inference = module.inference(x, batch_index=batch)
        z = inference["qz"].loc
        out = module.generative(z=z, library=inference["library"], batch_index=batch, y=codes)
        return out["px"].sample().numpy()


def main() -> None:
    args = parse_args()
    from scldbench.threads import limit_threads

    limit_threads(args.threads)
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from scldbench.counts.numpy import log_normalise
    from scldbench.evaluation import labels_of
    from scldbench.registry import get_generator
    from scldbench.suite import load_suite

    suite = load_suite(args.suite)
    prepared = prepared_as_suite(suite, args.data, args.labels, args.clusters)
    train, test = prepared.train, prepared.test
    train_labels = labels_of(train, prepared.labels_key)
    test_labels = labels_of(test, prepared.labels_key)
    real_train, real_test = log_normalise(train.X), log_normalise(test.X)
    classifier = make_pipeline(PCA(50, random_state=0), LogisticRegression(max_iter=2000))
    classifier.fit(real_train, train_labels)
    ceiling = label_figures(real_test, test_labels, real_test, test_labels, classifier)
    print(f"{prepared.info['n_train']} training cells, {train.n_vars} genes, {len(np.unique(train_labels))} labels")
    print(f"real test cells: label acc {ceiling['label_accuracy']:.3f}")
    rows = []
    for epochs in args.scanvi_epochs:
        params = dict(suite.params.get("scvi", {})) | {"scanvi_epochs": epochs} | json.loads(args.fixed)
        model = get_generator("scvi").create(seed=args.seed, device="cpu", **params)
        start = time.perf_counter()
        model.fit(train, prepared.labels_key)
        fit_seconds = time.perf_counter() - start
        sample = model.sample(test.n_obs, labels=test_labels)
        drawn = label_figures(log_normalise(sample.X), labels_of(sample, prepared.labels_key), real_test,
                              test_labels, classifier)
        encoded = label_figures(log_normalise(encoded_draws(model, train, train_labels)), train_labels, real_test,
                                test_labels, classifier)
        rows.append({"scanvi_epochs": epochs, "fit_seconds": fit_seconds, "drawn": drawn, "encoded": encoded})
        print(f"scanvi_epochs {epochs:4d}  fit {fit_seconds:6.0f} s  drawn: label acc {drawn['label_accuracy']:.3f} "
              f"dev corr {drawn['dev_corr_mean']:.3f} (min {drawn['dev_corr_min']:.3f})  encoded: label acc "
              f"{encoded['label_accuracy']:.3f} dev corr {encoded['dev_corr_mean']:.3f}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
