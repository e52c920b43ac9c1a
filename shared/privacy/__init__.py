"""Node-side differential privacy: accounting (Opacus), an independent cross-check and the ledger.

The ledger is the authority on a retailer's budget: every release is checked against consent and
the lifetime cap and charged, write-ahead, before it may leave the node.
"""

from shared.privacy.accounting import (
    DEFAULT_DELTA,
    LIFETIME_EPSILON_CAP,
    AccountantKind,
    Mechanism,
    calibrate_noise_multiplier,
    epsilon,
)
from shared.privacy.ledger import LEDGER_FILENAME, LedgerError, PrivacyLedger, release_id_for
from shared.privacy.models import (
    Decline,
    DeclineCode,
    PrivacyBudget,
    Quote,
    ReleaseKind,
    ReleaseRecord,
    ReleaseState,
    Reservation,
)

__all__ = [
    "DEFAULT_DELTA",
    "LEDGER_FILENAME",
    "LIFETIME_EPSILON_CAP",
    "AccountantKind",
    "Decline",
    "DeclineCode",
    "LedgerError",
    "Mechanism",
    "PrivacyBudget",
    "PrivacyLedger",
    "Quote",
    "ReleaseKind",
    "ReleaseRecord",
    "ReleaseState",
    "Reservation",
    "calibrate_noise_multiplier",
    "epsilon",
    "release_id_for",
]
