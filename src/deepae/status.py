"""`run.json`: where a run folder's training stands, so every command can tell a finished
run from one that crashed, was interrupted or diverged, and say how to continue it.

    {"status": "training" | "interrupted" | "failed" | "complete",
     "epochs_done": 3, "epochs": 10, "step": 512, "message": "...", "data": {...}}

A folder without run.json is a plain saved model (`Autoencoder.save`): complete.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from deepae import fsio
from deepae.errors import RunError

STATUS_FILE = "run.json"
COMPLETE = "complete"


def write(folder: str | Path, status: str, *, epochs_done: int, epochs: int, step: int = 0,
          data: dict[str, Any] | None = None, message: str | None = None) -> None:  # fmt: skip
    """Record the run's state (atomically, like every file of a run)."""
    record = {
        "status": status,
        "epochs_done": epochs_done,
        "epochs": epochs,
        "step": step,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": data,
    }
    if message:
        record["message"] = message
    fsio.write_json(Path(folder) / STATUS_FILE, record)


def read(folder: str | Path) -> dict[str, Any] | None:
    """The run's status record, or None for a folder without one."""
    path = Path(folder) / STATUS_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path} is corrupt ({e}); delete it if the run finished") from None
    if not isinstance(record, dict) or "status" not in record:
        raise RunError(f"{path} is not a deepae run status file")
    return record


def require_complete(folder: str | Path) -> None:
    """Raise a RunError that says how to continue, unless the run finished training."""
    record = read(folder)
    if record is None or record["status"] == COMPLETE:
        return
    where = f"after epoch {record.get('epochs_done')} of {record.get('epochs')}"
    if record.get("step"):
        where += f" (+{record['step']} steps)"
    why = f": {record['message']}" if record.get("message") else ""
    raise RunError(
        f"run {folder} is incomplete ({record['status']} {where}{why}); "
        f"continue it with: deepae train --resume {folder}"
    )
