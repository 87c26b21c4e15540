"""Weights & Biases (``logger=wandb``): one W&B run per rlexp run (a population's members each
their own), its files under the run directory (``wandb/``).

- Mode: ``logger.wandb.mode``; by default online when wandb has an API key, else offline, with
  one line saying how to upload the run (``wandb sync``). The key is wandb's own business
  (``WANDB_API_KEY``, ``wandb login``): rlexp never reads or writes it.
- Names: ``logger.wandb.project`` and ``entity``; the run's name is its directory's, its group
  the sweep's directory name, its job type the agent, its tags ``logger.wandb.tags``.
- Logged: the resolved config, TensorBoard's scalars (names and steps alike), the final
  evaluation in the run's summary (``final/*``), a GIF or video sent at the end as a
  ``wandb.Video``.
- Resume: the run's id is saved in the run directory, so a resumed run goes on in the same W&B
  run (online: ``resume="allow"``; offline, a second offline run with the same id, which
  ``wandb sync`` appends).
- Every run is finished, whatever its end (each rlexp run finishes its own, in every launcher).
"""

from __future__ import annotations

import logging
import netrc
import os
from itertools import groupby
from pathlib import Path

import yaml

from rlexp.trackers import Point, Tracker, save_id, saved_ids
from rlexp.trackers.mlflow import run_label

log = logging.getLogger("rlexp")
VIDEO_SUFFIXES = (".gif", ".mp4")


def has_api_key() -> bool:
    """Whether wandb would find an API key (the environment or ~/.netrc); never read here."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbTracker(Tracker):
    name = "wandb"

    def open(self) -> None:
        import wandb

        mode = self.settings.mode or ("online" if has_api_key() else "offline")
        ids = saved_ids(self.run_dir).get(self.name)
        run_id = ids["id"] if ids else wandb.util.generate_id()
        if not ids and mode != "disabled":  # disabled: nothing written anywhere
            save_id(self.run_dir, self.name, {"id": run_id, "project": self.settings.project})
        self.run = wandb.init(
            project=self.settings.project, entity=self.settings.entity,
            name=run_label(self.run_dir),
            group=None if self.sweep_dir is None else self.sweep_dir.name,
            job_type=str(self.flat_config.get("agent.name", "")) or None,
            tags=list(self.settings.tags), config=yaml.safe_load(self.yaml_text),
            id=run_id, resume="allow" if mode == "online" else None, mode=mode,
            dir=str(self.run_dir), reinit="create_new",
            settings=wandb.Settings(console="off", silent=True))
        if mode == "offline" and not ids:
            log.info("wandb: offline (no API key); upload the run later with: wandb sync %s",
                     self.run_dir / "wandb" / "offline-run-*")

    def send_scalars(self, points: list[Point]) -> None:
        for step, at_step in groupby(points, key=lambda p: p[2]):
            self.run.log({tag: value for tag, value, _ in at_step}, step=step)

    def send_files(self, files: list[Path]) -> None:
        import wandb

        for path in files:
            if path.suffix in VIDEO_SUFFIXES:
                self.run.log({f"eval/{path.stem}": wandb.Video(str(path))})
            else:
                self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, status: str, summary: dict[str, float]) -> None:
        self.run.summary.update({**{f"final/{k}": v for k, v in summary.items()},
                                 "status": status})
        self.run.finish(exit_code=0 if status == "completed" else 1)
