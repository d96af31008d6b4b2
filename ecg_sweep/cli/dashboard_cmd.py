"""``ecg-sweep dashboard``: optuna-dashboard on 127.0.0.1 for the study storage.

The dashboard is the optuna-dashboard package itself (its WSGI app), served in this process on
the loopback interface only, over the same storage URL that ``optimize`` writes to, so studies
are watched live (history, parallel coordinates, importances, intermediate values) while workers
run. Printed URLs never show a password.
"""

from __future__ import annotations

from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import typer

from ecg_sweep.cli._common import console, out
from ecg_sweep.cli.options import Port, Storage

__all__ = ["dashboard_cmd"]

HOST = "127.0.0.1"


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # Ctrl-C does not wait for a browser's open connections


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass  # one line per request would bury what the command printed


def _open_storage(url: str):
    """The Optuna storage behind ``url``: an existing sqlite file or a reachable database."""
    from ecg_sweep.errors import StorageError
    from ecg_sweep.sweep.study import make_storage
    from ecg_sweep.tracking.client import mask_url

    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not path.is_file():
            # Opening it would create an empty database and show nothing.
            raise StorageError(
                f"--storage {mask_url(url)}: no such file {path} (run `ecg-sweep optimize` in "
                "this folder first, or pass the --storage the studies were written to)"
            )
    # No heartbeats: the dashboard reads (and annotates) trials, it never runs one.
    return make_storage(url, heartbeat_interval=None, grace_period=None)


def dashboard_cmd(storage: Storage = None, port: Port = 8080) -> None:
    """Serve optuna-dashboard for the study storage on 127.0.0.1 (Ctrl-C stops it).

    Studies appear live as `ecg-sweep optimize` workers write them: optimization history,
    parallel coordinates, hyperparameter importances, intermediate values per epoch.
    """
    import optuna_dashboard

    from ecg_sweep.errors import ConfigError, StorageError
    from ecg_sweep.sweep import DEFAULT_STORAGE
    from ecg_sweep.tracking.client import mask_url

    url = storage or DEFAULT_STORAGE
    st = _open_storage(url)
    try:
        studies = st.get_all_studies()
    except Exception as e:  # a schema from another Optuna, a database that refuses us
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(
            f"--storage {mask_url(url)}: cannot read studies: {mask_url(msg)[:300]}"
        ) from None
    app = optuna_dashboard.wsgi(st)
    try:
        server = make_server(
            HOST, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler
        )
    except OSError as e:
        raise ConfigError(f"--port {port}: cannot listen on {HOST}: {e.strerror}") from None
    base = f"http://{HOST}:{server.server_port}"
    console.print(
        f"optuna-dashboard for {mask_url(url)} at {base}/dashboard  (Ctrl-C to stop)",
        highlight=False,
        markup=False,
    )
    if studies:
        for name in sorted(s.study_name for s in studies):
            study_id = st.get_study_id_from_name(name)
            out.print(
                f"  {name}: {base}/dashboard/studies/{study_id}", highlight=False, markup=False
            )
    else:
        console.print("  no study yet: studies appear here as `ecg-sweep optimize` creates them")
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    finally:
        server.server_close()
