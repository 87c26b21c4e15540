"""rliable's (Agarwal et al. 2021's library) interval estimates on two fixed score matrices, for
tests/test_suites.py to check rlexp's statistics against. rliable's dependency arch does not
import with pandas 3, which rlexp's environment has, so it runs in a venv of its own:

    python -m venv /tmp/rlv && /tmp/rlv/bin/pip install 'pandas<3' rliable
    /tmp/rlv/bin/python scripts/rliable_values.py > tests/data/rliable_intervals.json

Recorded with rliable 1.2.0, arch 7.2.0, numpy 2.4.6, pandas 2.3.3 (2026-12-07).
"""

import json

import numpy as np
from rliable import library as rly
from rliable import metrics

rng = np.random.default_rng(20261207)
x = np.round(rng.normal(0.6, 0.3, size=(10, 5)), 3)  # [runs, tasks]
y = np.round(rng.normal(0.45, 0.3, size=(10, 5)), 3)


def aggregates(scores):
    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_median(scores),
                     metrics.aggregate_mean(scores), metrics.aggregate_optimality_gap(scores)])


points, intervals = rly.get_interval_estimates({"x": x, "y": y}, aggregates, reps=50000)
poi, poi_interval = rly.get_interval_estimates({"x,y": (x, y)},
                                               metrics.probability_of_improvement, reps=50000)
print(json.dumps({"x": x.tolist(), "y": y.tolist(),
                  "points": {k: v.tolist() for k, v in points.items()},
                  "intervals": {k: v.tolist() for k, v in intervals.items()},
                  "poi": float(poi["x,y"]),
                  "poi_interval": np.asarray(poi_interval["x,y"]).ravel().tolist()}))
