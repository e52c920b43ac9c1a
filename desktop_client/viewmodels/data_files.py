"""Names of the files in a node directory, for the desktop pages.

Why a copy of the names: the modules that own them (``shared.federation.node``,
``shared.privacy``) import the privacy accountant, which loads Opacus and torch; the pages must
show before torch loads, so they take the names from here. A test checks both agree.
"""

from __future__ import annotations

CANONICAL_FILE = "canonical.parquet"  # shared.federation.node.CANONICAL_FILE
NODE_FILE = "node.json"  # shared.federation.node.NODE_FILE
LEDGER_FILENAME = "privacy-ledger.sqlite3"  # shared.privacy.LEDGER_FILENAME
INSIGHTS_FILENAME = "insights.sqlite"  # shared.insights.store.INSIGHTS_FILENAME
