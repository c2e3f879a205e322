"""Screenshots of the MLflow UI as a new user sees it after `voxnas demo`.

    .venv/bin/python docs/screenshots.py [--config configs/demo.yaml] [--out docs/ui]

Starts `voxnas ui` on a free port, takes headless Chromium screenshots (Debian's
``chromium`` package: ``apt-get install chromium``) of the runs view, the chart view of one
fold search, the parent protocol run and the registered model version, then stops the
server. Needs a finished demo in the config's workdir.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pages(uri: str, experiment: str, base: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    from voxnas.platform.tracking import ML_MODE, ui_links

    links = ui_links(uri, experiment, base)
    if "parent" not in links:
        raise SystemExit(f"no voxnas protocol in {uri}: run `voxnas demo` first")
    client = MlflowClient(uri)
    eid = client.get_experiment_by_name(experiment).experiment_id
    parent = links["parent"].rsplit("/", 1)[-1].split("?")[0]
    search = client.search_runs(
        [eid],
        f"tags.`mlflow.parentRunId` = '{parent}' and tags.`voxnas.stage` = 'search'",
        order_by=["attributes.run_name ASC"],
        max_results=1,
    )[0]
    model = client.get_run(parent).data.tags["voxnas.registered_model"]  # models:/NAME/V
    name, version = model[len("models:/") :].rsplit("/", 1)
    return {
        "runs_view": links["runs"],
        "search_charts": f"{base}/#/experiments/{eid}/runs/{search.info.run_id}/model-metrics"
        f"?{ML_MODE}",
        "protocol_run": links["parent"],
        "compare_searches": links["compare"],
        "registered_model": f"{base}/#/models/{name}/versions/{version}?{ML_MODE}",
    }


def _shoot(chromium: str, url: str, out: Path, size: str) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={size}",
                "--virtual-time-budget=45000",
                f"--screenshot={out}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    ap.add_argument("--out", default=str(ROOT / "docs" / "ui"))
    ap.add_argument("--size", default="1920,1080", help="window WIDTH,HEIGHT")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium: apt-get install chromium")
    from voxnas.config import load_config
    from voxnas.platform.tracking import tracking_uri

    cfg = load_config(args.config, args.set)
    uri = tracking_uri(cfg)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    pages = _pages(uri, cfg.tracking.experiment or cfg.name, base)
    cmd = [sys.executable, "-m", "voxnas.cli", "ui", args.config, "--port", str(port)]
    for item in args.set:
        cmd += ["--set", item]
    server = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("the MLflow UI did not start") from None
                time.sleep(1)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, url in pages.items():
            _shoot(chromium, url, out / f"{name}.png", args.size)
            print(f"{out / name}.png  <- {url}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
