"""examples/article.ipynb runs from top to bottom in a real Jupyter kernel (nbclient), on
the committed 2,000-digit fixture and one epoch, and shows every figure it draws."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "article.ipynb"
FIXTURE = Path(__file__).parent / "fixtures" / "mnist-small.npz"

# Executed in a process of its own: nbclient leaves an asyncio event loop behind in the
# process that runs it, and Playwright's sync API (the browser tests) then refuses to start.
RUNNER = """
import sys, nbformat
from nbclient import NotebookClient
source, out, data, folder = sys.argv[1:]
nb = nbformat.read(source, as_version=4)
(params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
params.source = f"DATA = {data!r}\\nEPOCHS = 1"
NotebookClient(nb, timeout=600, kernel_name="python3",
               resources={"metadata": {"path": folder}}).execute()
nbformat.write(nb, out)
"""


def test_the_article_notebook_runs_and_shows_its_figures(tmp_path):
    out = tmp_path / "executed.ipynb"
    # The kernel is this interpreter's (its "python" on PATH), with Jupyter's own inline
    # backend, not the non-interactive one the rest of the tests use.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(NOTEBOOK), str(out), str(FIXTURE), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Epoch 1/1 - " in text and "val_loss: " in text and "Total params: 51,154" in text
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    # loss curve, latent scatter, one decoded digit, manifold, reconstructions
    assert len(pictures) == 5
