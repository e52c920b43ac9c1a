"""Plain-language summary of a validation report for the terminal (and the app's log)."""

from __future__ import annotations

from shared.ingest import Issue, ValidationReport
from shared.schema import Task

SHOWN_PER_SEVERITY = 8


def _where(issue: Issue) -> str:
    parts = []
    if issue.row is not None:
        parts.append(f"row {issue.row}")
    if issue.column:
        parts.append(f"column '{issue.column}'")
    return (", ".join(parts) + ": ") if parts else ""


def describe_report(report: ValidationReport) -> str:
    lines: list[str] = []
    if not report.readable:
        lines.append(f"{report.source}: CANNOT READ")
        lines.extend(f"  {issue.message}" for issue in report.errors())
        return "\n".join(lines)
    verdict = "VALID" if report.valid else "INVALID"
    lines.append(
        f"{report.source}: {verdict} - {report.error_count} errors, {report.warning_count} warnings"
    )
    described = ", ".join(
        x
        for x in (
            report.source_format,
            report.encoding,
            f"separator {report.delimiter!r}" if report.delimiter else "",
        )
        if x
    )
    lines.append(f"  file: {described}")
    lines.append(f"  rows: {report.row_count:,} read, {report.imported_rows:,} imported")
    if report.mapping:
        mapped = ", ".join(f"{field} <- '{source}'" for field, source in report.mapping.items())
        lines.append(f"  mapping: {mapped}")
    for name, readiness in report.tasks.items():
        label = Task(name).label
        state = "ready" if readiness.ready else "not ready: needs " + "; ".join(readiness.missing)
        lines.append(f"  {label}: {state}")
    for title, issues, count in (
        ("errors", report.errors(), report.error_count),
        ("warnings", report.warnings(), report.warning_count),
    ):
        if not count:
            continue
        kinds = report.counts_by_kind()["error" if title == "errors" else "warning"]
        summary = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in kinds.items())
        lines.append(f"  {title} ({summary}):")
        lines.extend(f"    {_where(i)}{i.message}" for i in issues[:SHOWN_PER_SEVERITY])
        if count > SHOWN_PER_SEVERITY:
            lines.append(f"    ... {count - SHOWN_PER_SEVERITY} more (use --json for all)")
    return "\n".join(lines)
