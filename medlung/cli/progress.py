"""Progress of a batch on the command line: a bar on a terminal, lines in logs, the closing counts line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click


class RowCounter:
    """Counts finished report rows, prints errors and quality flags as they come, and the summary at the end.

    Parameters
    ----------
    bar : click progress bar
        Advanced once per row.
    total : int, optional
        Films in the batch; with it, and standard error not a terminal (a log),
        a ``[done/total] ...`` line is printed every tenth of the films or every minute.
    spacing_given : bool
        ``--spacing`` was given: no closing hint about films without spacing.
    """

    def __init__(self, bar, total: int | None = None, spacing_given: bool = False) -> None:
        self.bar = bar
        self.spacing_given = spacing_given
        self.counts = {"ok": 0, "skipped": 0, "error": 0, "flagged": 0, "uncalibrated": 0}
        self.log = _ProgressLines(total) if total is not None and not sys.stderr.isatty() else None

    def __call__(self, row: dict) -> None:
        counts = self.counts
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        if row["status"] == "error":
            click.echo(f"\nerror: {row['error']}", err=True)
        elif row.get("qc") == "flagged":
            counts["flagged"] += 1
            click.echo(f"\nquality flagged: {row['file']}: {'; '.join(row['qc_reasons'])}", err=True)
        if row["status"] == "ok" and row.get("calibrated") is False:
            counts["uncalibrated"] += 1
        self.bar.update(1)
        if self.log is not None:
            self.log(counts)

    def finish(self, seconds: float, report: Path) -> int:
        """Print the closing line; return the exit status (1 when a film failed)."""
        counts = self.counts
        skipped = f", skipped {counts['skipped']} (outputs exist; --overwrite redoes them)" if counts["skipped"] else ""
        flagged = f" ({counts['flagged']} flagged by the quality check)" if counts["flagged"] else ""
        if counts["uncalibrated"] and not self.spacing_given:
            click.echo(
                f"{counts['uncalibrated']} film(s) give no pixel spacing: their areas are in px, not cm² "
                "(columns *_px); if you know a film's spacing, give it with --spacing MM (or ROW,COL).",
                err=True,
            )
        click.echo(
            f"done {counts['ok']}{flagged}{skipped}, failed {counts['error']}, {seconds:.1f} s; report: {report}"
        )
        return 1 if counts["error"] else 0


class _ProgressLines:
    """Progress for logs (stderr is not a terminal): ``[done/total] ...`` every tenth of the films or every minute.

    Parameters
    ----------
    total : int
        Films in the batch.
    every_s : float
        Longest gap between two lines, seconds.
    """

    def __init__(self, total: int, every_s: float = 60.0) -> None:
        self.total, self.every_s = total, every_s
        self.step = max(1, -(-total // 10))
        self.started = self.last = time.perf_counter()

    def __call__(self, counts: dict) -> None:
        done, now = counts["ok"] + counts["skipped"] + counts["error"], time.perf_counter()
        if done % self.step and done != self.total and now - self.last < self.every_s:
            return
        self.last = now
        elapsed = now - self.started
        eta = elapsed / done * (self.total - done)
        click.echo(
            f"[{done}/{self.total}] ok {counts['ok']}, skipped {counts['skipped']}, failed {counts['error']}; "
            f"{elapsed:.0f} s elapsed, about {eta:.0f} s left",
            err=True,
        )
