"""Demand model, features and training (plain and DP-SGD) shared by the node and studies."""

from shared.model.baselines import pool, train_centralised, train_local_only
from shared.model.demand import FEDERATED_PARAMETERS, LOCAL_PARAMETERS, DemandModel
from shared.model.evaluation import evaluate, poisson_loss, predict
from shared.model.features import (
    CALENDAR_FEATURES,
    DRIVERS,
    DemandData,
    build_examples,
    calendar_features,
    chronological_split,
)
from shared.model.training import (
    ForeignDataError,
    Mechanism,
    check_own_data,
    fit_offsets,
    personalised,
    train_local,
    train_private,
)
from shared.model.uncertainty import Interval, elasticity_intervals

__all__ = [
    "CALENDAR_FEATURES",
    "DRIVERS",
    "FEDERATED_PARAMETERS",
    "LOCAL_PARAMETERS",
    "DemandData",
    "DemandModel",
    "ForeignDataError",
    "Interval",
    "Mechanism",
    "build_examples",
    "calendar_features",
    "check_own_data",
    "chronological_split",
    "elasticity_intervals",
    "evaluate",
    "fit_offsets",
    "personalised",
    "poisson_loss",
    "pool",
    "predict",
    "train_centralised",
    "train_local",
    "train_local_only",
    "train_private",
]
