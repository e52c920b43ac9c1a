"""The coordinator's business logic as plain Python services (routes and CLI stay thin).

Each module has one job: ``enrollment`` (tokens, node keys, retailers), ``campaigns``
(campaign lifecycle and round progress), ``ledger`` (mirror of the nodes' privacy ledgers),
``models`` (published global models with checksums and model cards) and ``aggregates``
(k-anonymous published statistics with retention).
"""
