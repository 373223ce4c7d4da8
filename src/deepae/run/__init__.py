"""Run folders: what `deepae train` writes and every other command reads.

    from deepae import run
    result = run.train_run("runs/a", model_config, train_config, data)
    run.resume("runs/a", epochs=20)                # continue a stopped or finished run
    ae, data = run.load_run_data("runs/a")         # the model and the data it was trained on
    run.write_codes("codes.csv", ae.encode(data.x_train), data.y_train)

run/files.py names every file of a run folder and is the one place each is written and
read; run/pipeline.py trains and resumes; run/figures.py and run/report.py draw.
"""

from deepae.run.figures import (
    check_indices,
    default_indices,
    reconstruction_figure,
    save_figure,
    write_decoded,
    write_figures,
)
from deepae.run.files import (
    output_path,
    read_history,
    read_metrics,
    read_status,
    reading,
    require_complete,
    write_evaluation,
)
from deepae.run.loading import evaluate_run, load_data, load_run, load_run_data, write_codes
from deepae.run.pipeline import (
    RunResult,
    data_record,
    new_run_folder,
    redraw,
    retry_command,
    run_metrics,
    start,
    train_run,
    write_pages,
)
from deepae.run.resume import resume
from deepae.run.signals import StopOnSignal

__all__ = [
    "RunResult",
    "StopOnSignal",
    "check_indices",
    "data_record",
    "default_indices",
    "evaluate_run",
    "load_data",
    "load_run",
    "load_run_data",
    "new_run_folder",
    "output_path",
    "read_history",
    "read_metrics",
    "read_status",
    "reading",
    "reconstruction_figure",
    "redraw",
    "require_complete",
    "resume",
    "retry_command",
    "run_metrics",
    "save_figure",
    "start",
    "train_run",
    "write_codes",
    "write_decoded",
    "write_evaluation",
    "write_figures",
    "write_pages",
]
