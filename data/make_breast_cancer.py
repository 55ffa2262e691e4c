"""Build data/breast_cancer.csv from the copy of the Breast Cancer Wisconsin (Diagnostic)
data that ships with scikit-learn (``pip install '.[data]'``; no download).

569 fine-needle aspirates of breast masses, 30 features computed from the digitised
images of their cell nuclei (mean, standard error and worst value of ten measurements
such as radius, texture and concavity). Task: is the mass malignant (``malignant`` = 1,
212 rows) or benign (0, 357 rows)? The CSV is the starting point of the README's worked
example (CSV -> HDF5 -> split -> train -> evaluate).

Usage: python data/make_breast_cancer.py [OUTPUT]   (default: data/breast_cancer.csv)
"""

from __future__ import annotations

import sys
from pathlib import Path

from sklearn.datasets import load_breast_cancer

from mpigd.io.outputs import atomic_path


def main(out: Path) -> None:
    frame = load_breast_cancer(as_frame=True).frame
    # scikit-learn codes benign as 1; the positive class here is the malignant one.
    frame["malignant"] = 1 - frame.pop("target")
    frame.columns = [name.replace(" ", "_") for name in frame.columns]
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")
    print(f"wrote {out}: {len(frame)} rows, {frame.shape[1] - 1} features + label 'malignant'")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("breast_cancer.csv"))
