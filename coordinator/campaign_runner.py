"""Campaigns against the real SuperLink: submit the Flower App run, follow it, end it cleanly.

A campaign's ε is each retailer's budget for the whole campaign. With bundles among its tasks a
quarter of it pays for the basket statistics round and the rest is split evenly over the training
rounds; otherwise all of it goes to training. What a round did is recorded by the ServerApp itself
(``coordinator.progress``); this module only starts runs and maps their end to the campaign.

A run does not survive a restart of the coordinator or its SuperLink: ``recover`` fails every
campaign whose run is gone, saying so, and nodes never pay twice for a round that is retried
later (they re-send their kept update), so starting a new campaign is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from coordinator.db import utc_now
from coordinator.flower_app import APP_DIR
from coordinator.flower_control import ControlError, RunNotFound
from coordinator.runtime import Coordinator
from coordinator.services.campaigns import CampaignRecord, validate_campaign
from shared.federation.settings import RunSettings
from shared.schema import Task

log = logging.getLogger(__name__)

STATISTICS_SHARE = 0.25
MIN_EPSILON = 0.05  # the least ε a round may spend (RunSettings)
FINISHED = "finished:"


class CampaignUnavailable(Exception):
    """No SuperLink to run a campaign on; the message says what to do."""


def run_config_for(campaign: CampaignRecord) -> dict[str, bool | int | float | str]:
    """The run config of a campaign (validated again by every node, see RunSettings)."""
    bundles = Task.BUNDLES.value in campaign.tasks
    statistics = max(campaign.epsilon * STATISTICS_SHARE, MIN_EPSILON) if bundles else 0.0
    per_round = (campaign.epsilon - statistics) / campaign.rounds
    if per_round < MIN_EPSILON:
        raise ValueError(
            f"ε {campaign.epsilon:g} over {campaign.rounds} rounds leaves {per_round:.3g} per "
            f"round, below the {MIN_EPSILON} a round needs; use fewer rounds or a larger ε"
        )
    settings = RunSettings(
        rounds=campaign.rounds, epsilon_per_round=per_round, statistics_epsilon=statistics
    )
    config: dict[str, bool | int | float | str] = dict(settings.to_run_config())
    config["campaign-id"] = campaign.id
    return config


class CampaignRunner:
    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord

    def start(
        self, *, rounds: int, epsilon: float, tasks: Sequence[str], actor: str
    ) -> CampaignRecord:
        validate_campaign(rounds, epsilon, tasks)
        plan = CampaignRecord(
            id=0, status="pending", rounds=rounds, epsilon=epsilon, tasks=tuple(tasks),
            flower_run_id=None, created_by=actor, created_at=utc_now(), started_at=None,
            finished_at=None, error=None,
        )  # fmt: skip
        run_config_for(plan)  # refuses a budget too thin for the rounds before anything starts
        control = self.coord.control
        if control is None:
            raise CampaignUnavailable(
                "this coordinator has no SuperLink running; start it with `retail-coordinator "
                "serve` and try again"
            )
        campaign = self.coord.campaigns.create(
            rounds=rounds, epsilon=epsilon, tasks=tasks, created_by=actor
        )
        try:
            config = run_config_for(campaign)
            run_id = control.submit_run(APP_DIR, config)
        except (ControlError, ValueError) as exc:
            self.coord.campaigns.fail(campaign.id, f"the SuperLink refused the run: {exc}")
            raise CampaignUnavailable(f"the campaign could not start: {exc}") from None
        return self.coord.campaigns.mark_running(campaign.id, run_id)

    def cancel(self, campaign_id: int, actor: str) -> CampaignRecord:
        campaign = self.coord.campaigns.get(campaign_id)
        if campaign is not None and campaign.flower_run_id is not None and self.coord.control:
            try:
                self.coord.control.stop_run(campaign.flower_run_id)
            except ControlError as exc:
                log.warning("stopping run %s: %s", campaign.flower_run_id, exc)
        return self.coord.campaigns.cancel(campaign_id, actor)

    def poll(self) -> None:
        """Map finished runs to finished or failed campaigns."""
        control = self.coord.control
        if control is None:
            return
        for campaign in self.coord.campaigns.interrupted():
            if campaign.flower_run_id is None:
                continue
            try:
                status = control.run_status(campaign.flower_run_id)
            except RunNotFound:
                self._fail_lost(campaign)
                continue
            except ControlError as exc:
                log.info("cannot check campaign %s now: %s", campaign.id, exc)
                continue
            if not status.startswith(FINISHED):
                continue
            outcome = status.removeprefix(FINISHED)
            if outcome == "completed":
                self.coord.campaigns.finish(campaign.id)
            elif outcome != "stopped":
                self.coord.campaigns.fail(campaign.id, f"the Flower run ended: {outcome}")

    def recover(self) -> list[CampaignRecord]:
        """At start-up: every campaign still marked running lost its ServerApp with the old
        daemon (the supervisor ends a dead daemon's SuperLink family before starting anew), so
        its run is stopped if the SuperLink still lists it and the campaign is failed cleanly;
        a run that did finish meanwhile is mapped as ``poll`` does."""
        failed = []
        for campaign in self.coord.campaigns.interrupted():
            control, run_id = self.coord.control, campaign.flower_run_id
            if control is not None and run_id is not None:
                try:
                    status = control.run_status(run_id)
                except ControlError:
                    status = ""
                if status == FINISHED + "completed":
                    self.coord.campaigns.finish(campaign.id)
                    continue
                if status and not status.startswith(FINISHED):
                    try:
                        control.stop_run(run_id)
                    except ControlError as exc:
                        log.warning("stopping lost run %s: %s", run_id, exc)
            failed.append(self._fail_lost(campaign))
        return failed

    def _fail_lost(self, campaign: CampaignRecord) -> CampaignRecord:
        return self.coord.campaigns.fail(
            campaign.id,
            "interrupted: the coordinator or its SuperLink restarted during the campaign; the "
            "round in progress was not published and nobody was charged twice. Start a new "
            "campaign to continue.",
        )
