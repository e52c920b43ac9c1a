"""What the demo reports: rounds, participants, ε per retailer, federated vs local-only error,
and where each retailer's report is. Read from the places the owners themselves read: the
coordinator's round records, each node's own ledger and insight store."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coordinator.demo.steps import DemoFederation
    from shared.node_runtime.service import NodeService


@dataclass(frozen=True)
class NodeOutcome:
    name: str
    node_dir: Path
    epsilon_spent: float | None
    epsilon_cap: float | None
    federated_wape: float | None
    local_wape: float | None
    value_sentence: str | None
    report: Path | None
    insight_kinds: tuple[str, ...]
    model_version: str | None
    mirrored_epsilon: float | None = None  # what the coordinator's ledger mirror holds

    @classmethod
    def of(cls, name: str, service: NodeService) -> NodeOutcome:
        from shared.insights.store import InsightStore

        status = service.status()
        ledger = status.ledger or {}
        with InsightStore.in_data_dir(service.node_dir, create=False) as store:
            batches = store.latest_by_kind()
            value = store.latest("value")
        row = value.rows[0] if value is not None and value.rows else {}
        report = service.node_dir / "insights-report.html"
        return cls(
            name=name,
            node_dir=service.node_dir,
            epsilon_spent=ledger.get("spent"),
            epsilon_cap=ledger.get("cap"),
            federated_wape=row.get("federated_wape"),
            local_wape=row.get("local_wape"),
            value_sentence=row.get("message"),
            report=report if report.exists() else None,
            insight_kinds=tuple(sorted(batches)),
            model_version=status.model_version,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "node_dir": str(self.node_dir),
            "epsilon_spent": self.epsilon_spent,
            "epsilon_cap": self.epsilon_cap,
            "federated_wape": self.federated_wape,
            "local_wape": self.local_wape,
            "value": self.value_sentence,
            "report": None if self.report is None else str(self.report),
            "insight_kinds": list(self.insight_kinds),
            "model_version": self.model_version,
            "mirrored_epsilon_spent": self.mirrored_epsilon,
        }


@dataclass(frozen=True)
class DemoSummary:
    campaign: dict[str, Any]
    rounds: list[dict[str, Any]]
    nodes: list[NodeOutcome]
    timings: dict[str, float]
    workdir: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign": {
                key: self.campaign.get(key)
                for key in ("id", "status", "rounds", "epsilon", "tasks", "flower_run_id")
            },
            "rounds": [
                {
                    key: row.get(key)
                    for key in ("round", "stage", "attempt", "status", "participants", "dropouts")
                }
                for row in self.rounds
            ],
            "nodes": [node.to_json() for node in self.nodes],
            "timings_s": self.timings,
            "workdir": str(self.workdir),
        }

    def lines(self) -> list[str]:
        """The human summary."""
        training = [r for r in self.rounds if r.get("stage") != "statistics"]
        aggregated = sum(r.get("status") == "aggregated" for r in training)
        out = [
            f"Campaign #{self.campaign.get('id')} {self.campaign.get('status')}: "
            f"{aggregated} of {self.campaign.get('rounds')} training rounds aggregated "
            f"(ε {self.campaign.get('epsilon')} per retailer).",
        ]
        for row in self.rounds:
            stage = "statistics" if row.get("stage") == "statistics" else f"round {row['round']}"
            out.append(
                f"  {stage:<10} {row.get('status'):<10} {row.get('participants')} participants"
            )
        out.append("Retailers:")
        for node in self.nodes:
            spent = "?" if node.epsilon_spent is None else f"{node.epsilon_spent:.2f}"
            cap = "?" if node.epsilon_cap is None else f"{node.epsilon_cap:g}"
            error = (
                "no comparison"
                if node.federated_wape is None or node.local_wape is None
                else f"error federated {node.federated_wape:.3f} vs local-only "
                f"{node.local_wape:.3f}"
            )
            mirrored = (
                ""
                if node.mirrored_epsilon is None
                else f" (coordinator: {node.mirrored_epsilon:.2f})"
            )
            out.append(f"  {node.name}: ε spent {spent} of {cap}{mirrored}; {error}")
            if node.report is not None:
                out.append(f"      report: {node.report}")
        total = sum(self.timings.values())
        out.append(f"Done in {total:.0f} s; every process stopped. Work dir: {self.workdir}")
        return out


def summarise(
    federation: DemoFederation,
    campaign: dict[str, Any],
    rounds: list[dict[str, Any]],
    mirror: dict[str, float],
) -> DemoSummary:
    nodes = [
        replace(node, mirrored_epsilon=mirror.get(node.name)) for node in federation.outcomes()
    ]
    return DemoSummary(
        campaign=campaign,
        rounds=rounds,
        nodes=nodes,
        timings=federation.timings,
        workdir=federation.workdir,
    )
