"""The ``gate`` command: each subcommand is a few lines calling into its package."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gate.config import Settings, load_settings
from gate.errors import GateError

app = typer.Typer(
    help="SEG quality gate: verifies DICOM SEGs with REC-Net + SSIM before the PACS.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.")
app.add_typer(db_app, name="db")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="config.yaml (default ./config.yaml if present)")
]

err = Console(stderr=True)


def _settings(config: Path | None) -> Settings:
    if config is None and Path("config.yaml").exists():
        config = Path("config.yaml")
    try:
        return load_settings(config)
    except GateError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


@app.command()
def serve(config: ConfigOption = None, verbose: bool = False) -> None:
    """Run the gate: Storage SCP + assemble/verify/record/route workers, until SIGINT/SIGTERM."""
    from gate.service import Service

    _logging(verbose)
    service = Service(_settings(config))
    service.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(f"gate {service.settings.ae_title} listening on port {service.port}", err=True)
    stop.wait()
    service.stop()


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None, revision: str = "head") -> None:
    """Apply the Alembic migrations to the configured database."""
    from gate.store.db import upgrade

    settings = _settings(config)
    upgrade(settings.db_url, revision)
    typer.echo(f"database at {revision}")


@app.command()
def verify(
    images: Annotated[Path, typer.Option(help="folder of the source instances (searched recursively)")],
    seg: Annotated[Path, typer.Option(help="the DICOM SEG file")],
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    config: ConfigOption = None,
) -> None:
    """Verify a SEG offline. Exit 0 on pass, 1 on fail, 2 on invalid input."""
    from gate.offline import verify_files

    settings = _settings(config)
    try:
        report = verify_files(images, seg, settings)
    except GateError as exc:
        print(f"invalid input: {exc}", file=sys.stderr)
        raise typer.Exit(2) from exc
    if json_output:
        print(json.dumps(report))
    else:
        table = Table(title=f"SEG {report['seg_sop_instance_uid']}: {report['verdict'].upper()}")
        for col in ("segment", "label", "score", "threshold", "frames", "verdict"):
            table.add_column(col, overflow="fold")
        for s in report["segments"]:
            table.add_row(
                str(s["number"]),
                s["label"],
                f"{s['score']:.4f}",
                f"{s['threshold']:.4f}",
                str(s["frames"]),
                s["verdict"],
            )
        Console().print(table)
    raise typer.Exit(0 if report["verdict"] == "pass" else 1)


@app.command()
def verdicts(
    config: ConfigOption = None, json_output: Annotated[bool, typer.Option("--json")] = False, limit: int = 50
) -> None:
    """Recorded verdicts, newest first."""
    from gate.queries import list_verdicts

    rows = list_verdicts(_settings(config), limit=limit)
    if json_output:
        print(json.dumps(rows))
        return
    table = Table(title="SEG verdicts")
    for col in ("received", "SEG", "state", "verdict", "score", "disposition", "reason"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["received_at"][:19],
            r["seg_sop_instance_uid"],
            r["state"],
            r["verdict"] or "",
            "" if r["score"] is None else f"{r['score']:.4f}",
            r["disposition"] or "",
            r["reason"] or "",
        )
    Console().print(table)


def _operator_sessions(settings: Settings):  # type: ignore[no-untyped-def]
    from gate.store.db import make_engine, session_factory, upgrade

    upgrade(settings.db_url)
    return session_factory(make_engine(settings.db_url))


def _refused(exc: GateError) -> typer.Exit:
    err.print(f"[red]refused:[/red] {exc}")
    return typer.Exit(2)


ByOption = Annotated[str, typer.Option("--by", help="who decides (recorded in the audit trail)")]
ReasonOption = Annotated[str, typer.Option("--reason", help="why (recorded in the audit trail)")]


@app.command()
def outbox(
    config: ConfigOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="also sent and cancelled sends")] = False,
) -> None:
    """Pending and failed sends (with --all: every send), oldest first."""
    from gate.route.operator import list_outbox

    rows = list_outbox(_operator_sessions(_settings(config)), include_all=show_all)
    if json_output:
        print(json.dumps(rows))
        return
    table = Table(title="Outbox" if show_all else "Outbox: pending and failed sends")
    for col in ("SEG", "object", "destination", "state", "attempts", "next attempt", "status", "error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["seg_sop_instance_uid"],
            r["sop_instance_uid"],
            r["destination"],
            r["state"],
            str(r["attempts"]),
            (r["next_attempt_at"] or "")[:19] if r["state"] == "pending" else "",
            r["last_status"] or "",
            r["last_error"] or "",
        )
    Console(width=240).print(table)


@app.command()
def retry(
    uid: Annotated[str | None, typer.Argument(help="SEG whose failed sends to requeue")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="requeue every failed send")] = False,
    by: Annotated[str | None, typer.Option("--by", help="who (default: the login name)")] = None,
    config: ConfigOption = None,
) -> None:
    """Put failed sends back to pending, due now, attempts reset; the running gate sends them."""
    import getpass

    from gate.route.operator import retry_failed

    settings = _settings(config)
    try:
        requeued = retry_failed(
            _operator_sessions(settings), uid=uid, all_failed=all_failed, by=by or getpass.getuser()
        )
    except GateError as exc:
        raise _refused(exc) from exc
    typer.echo(f"requeued {len(requeued)} failed send(s)" + "".join(f"\n  {u}" for u in requeued))


@app.command()
def release(
    uid: Annotated[str, typer.Argument(help="SOP Instance UID of the quarantined SEG")],
    by: ByOption,
    reason: ReasonOption,
    config: ConfigOption = None,
) -> None:
    """Forward a quarantined SEG (failed verdict, error, incomplete, refused send) to the PACS."""
    from gate.route.operator import release as release_seg

    settings = _settings(config)
    try:
        done = release_seg(settings, _operator_sessions(settings), uid, by=by, reason=reason)
    except GateError as exc:
        raise _refused(exc) from exc
    typer.echo(f"SEG {done.seg_sop_instance_uid} queued to {done.destination}; released by {by}")


@app.command()
def discard(
    uid: Annotated[str, typer.Argument(help="SOP Instance UID of the SEG")],
    by: ByOption,
    reason: ReasonOption,
    config: ConfigOption = None,
) -> None:
    """Discard a SEG: cancel its undelivered sends and delete its file (never its source images)."""
    from gate.route.operator import discard as discard_seg

    settings = _settings(config)
    try:
        done = discard_seg(settings, _operator_sessions(settings), uid, by=by, reason=reason)
    except GateError as exc:
        raise _refused(exc) from exc
    typer.echo(
        f"SEG {done.seg_sop_instance_uid} discarded by {by}; {len(done.cancelled)} send(s) cancelled"
        + ("" if done.removed is None else f"; removed {done.removed}")
    )


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="where to write the synthetic study")] = Path("./var/demo"),
    send: Annotated[bool, typer.Option(help="send it to the running gate (C-STORE)")] = True,
    config: ConfigOption = None,
) -> None:
    """Write a synthetic MR study with a good and a bad SEG and, when a gate runs, send it."""
    from gate.config import Destination
    from gate.net.send import echo, send_files
    from gate.synth.study import write_demo

    settings = _settings(config)
    files = write_demo(out)
    typer.echo(
        f"wrote {len(files.image_paths)} MR images, {files.good_seg_path.name}, {files.bad_seg_path.name}"
        f" under {out}"
    )
    if not send:
        return
    gate = Destination(ae_title=settings.ae_title, host="127.0.0.1", port=settings.port)
    if not echo(gate, calling_ae="DEMO"):
        typer.echo(
            f"no gate answers on port {settings.port}; start one with `gate serve`, then run "
            "`gate demo` again",
            err=True,
        )
        raise typer.Exit(1)
    outcomes = send_files(
        [*files.image_paths, files.good_seg_path, files.bad_seg_path], gate, calling_ae="DEMO"
    )
    failed = [o for o in outcomes if not o.delivered]
    typer.echo(f"sent {len(outcomes) - len(failed)}/{len(outcomes)} objects; watch `gate verdicts`")
    if failed:
        raise typer.Exit(1)


def _register_model_commands() -> None:
    try:
        from gate.model.attack_cli import attack_command, train_baseline_command
        from gate.model.cli import export_command, train_command
        from gate.model.evaluate_cli import calibrate_command, evaluate_command
    except ImportError:  # the train extra's modules import torch lazily; this guards partial installs
        return
    app.command("train", help="Train the REC-Net (needs the `train` extra).")(train_command)
    app.command("export", help="Export a REC-Net checkpoint to ONNX + model card.")(export_command)
    app.command("train-baseline", help="Train the Dice-regression baseline (needs the `train` extra).")(
        train_baseline_command
    )
    app.command("evaluate", help="Evaluate verdict scores on held-out volumes (AUROC, false rejects, ...).")(
        evaluate_command
    )
    app.command("calibrate", help="Per-label thresholds for a target sensitivity from a labelled set.")(
        calibrate_command
    )
    app.command("attack", help="FGSM/PGD attacks on the REC-Net verdict and the Dice-regression baseline.")(
        attack_command
    )


_register_model_commands()

if __name__ == "__main__":
    app()
