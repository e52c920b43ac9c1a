"""Import, mapping, validation and normalisation of retailers' sales exports."""

from shared.ingest.aggregates import product_day, revenue_micros
from shared.ingest.mapping import (
    ColumnMapping,
    MappingFileError,
    MappingStore,
    load_mapping,
    save_mapping,
    suggest_mapping,
)
from shared.ingest.parsing import DateOrder
from shared.ingest.pipeline import ImportOptions, ImportResult, import_file, write_canonical
from shared.ingest.report import Issue, IssueKind, Severity, ValidationReport

__all__ = [
    "ColumnMapping",
    "DateOrder",
    "ImportOptions",
    "ImportResult",
    "Issue",
    "IssueKind",
    "MappingFileError",
    "MappingStore",
    "Severity",
    "ValidationReport",
    "import_file",
    "load_mapping",
    "product_day",
    "revenue_micros",
    "save_mapping",
    "suggest_mapping",
    "write_canonical",
]
