"""`ganforge report RUN`: one self-contained HTML page of a run, to read or send.

The page holds everything inline (pictures as data URIs), so it opens anywhere, offline:
the sample grids the run saved over its steps, its loss curves and, when it evaluated as
it trained (--eval-every), its metric curves and their table; its options; and the
command that resumes it. A few lines of script mark the page once every picture has
loaded (data-images-loaded on <body>), which the test reads from a headless browser.
"""
import base64
import glob
import html
import json
import os
import tempfile

from . import io
from .gan.trainer import read_checkpoint

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
code, pre { background: #f4f4f4; padding: 0.2em 0.4em; border-radius: 3px; }
pre { padding: 0.8em; overflow-x: auto; }
.samples { display: flex; flex-wrap: wrap; gap: 12px; }
.samples figure { margin: 0; text-align: center; font-size: 0.85em; }
.samples img { image-rendering: pixelated; max-width: 260px; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; }
"""

# every <img> decoded: the page says so on <body>, for a browser driven by a test or a script
LOADED_SCRIPT = """
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((image) => image.complete && image.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = loaded + "/" + images.length;
});
"""


def _data_uri(path):
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def _curves_png(draw, rows):
    """A curve picture drawn by io (draw(path, rows)) as a data URI."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "curves.png")
        draw(path, rows)
        return _data_uri(path)


def _table(rows):
    names = [k for k in rows[0] if k != "step"]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["step"] + names)
    body = "".join("<tr>" + f"<td>{row['step']}</td>" + "".join(f"<td>{row[n]:.4g}</td>" for n in names) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _options(config):
    rows = "".join(f"<tr><th>{html.escape(key)}</th><td style=\"text-align: left\"><code>"
                   f"{html.escape(json.dumps(value))}</code></td></tr>" for key, value in sorted(config.items()))
    return f"<table>{rows}</table>"


def resume_command(run_dir, state):
    """The command line that continues the run (its options are in its checkpoint): to
    its planned steps, or, when it reached them, further (--steps, a new total)."""
    command = f"ganforge train {state['model']} --out {run_dir} --resume"
    planned = state["config"].get("steps", 0)
    if state["step"] < planned:
        return command
    return f"{command} --steps {2 * state['step']}   # it finished its {planned} steps: give a new total"


def write_report(run_dir, out=None):
    """Write the run's page (default RUN/report.html) and return its path."""
    _, state = read_checkpoint(run_dir)
    out = out or os.path.join(run_dir, "report.html")
    samples = sorted(glob.glob(os.path.join(run_dir, "samples", "step-*.png")))
    history, evaluations = state.get("history", []), state.get("evaluations", [])
    title = f"{state['model']} on {state['data'].get('name', '?')}, step {state['step']}"
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>Run folder <code>{html.escape(os.path.abspath(run_dir))}</code>, written by ganforge "
             f"{html.escape(state.get('ganforge', '?'))}.</p>",
             "<h2>Samples over the steps</h2>"]
    if samples:
        parts.append('<div class="samples">' + "".join(
            f'<figure><img src="{_data_uri(p)}" alt="samples at {html.escape(os.path.basename(p))}">'
            f"<figcaption>step {int(os.path.basename(p)[5:11])}</figcaption></figure>" for p in samples) + "</div>")
    else:
        parts.append("<p>No sample grids: the run saved none (Pillow missing, or no sample step reached).</p>")
    parts.append("<h2>Losses</h2>")
    if history:
        parts.append(f'<img src="{_curves_png(io.save_loss_curves, history)}" alt="loss curves">')
    else:
        parts.append("<p>No losses logged yet.</p>")
    parts.append("<h2>Measures while training</h2>")
    if evaluations:
        parts.append(f'<img src="{_curves_png(io.save_metric_curves, evaluations)}" alt="metric curves">')
        parts.append(_table(evaluations))
    else:
        parts.append("<p>None: train with <code>--eval-every N</code> to score the run every N steps.</p>")
    parts += ["<h2>Resume</h2>", f"<pre>{html.escape(resume_command(run_dir, state))}</pre>",
              "<h2>Options</h2>", _options(state["config"])]
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><script>{LOADED_SCRIPT}</script></head>\n<body>\n" + "\n".join(parts)
            + "\n</body></html>\n")
    io.write_atomically(out, page.encode("utf-8"))
    return out
