"""``python -m bench [--quick]``: network and latency figures, written to bench/results/.

Speed and memory targets live here, never in timed unit tests. Every figure is quoted as a ratio
against a baseline run in the same command (a bare write + fsync SCP for the network, the bare
in-process verification for latency), because the machine it runs on may be shared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before onnxruntime is imported, as `make bench` sets it

from bench.latency import run_latency  # noqa: E402
from bench.network import ORTHANC, REPO, STORESCP, build_corpus, run_network, sender_kinds  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RECEIVERS = ("baseline", "gate", "storescp", "orthanc")
PACKAGES = ("pynetdicom", "pydicom", "highdicom", "SQLAlchemy", "onnxruntime", "numpy")

# quick: a check that the command works (and figures to commit when time is short); full: the record.
MODES = {
    "quick": {"studies": 3, "slices": 40, "repetitions": 3, "latency_studies": 2},
    "full": {"studies": 5, "slices": 40, "repetitions": 5, "latency_studies": 5},
}


def _first_line(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else None


def machine_info() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), ""
    )
    mem_kib = 0
    if Path("/proc/meminfo").exists():
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    os_name = platform.platform()
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))} (kernel {platform.release()})"
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["dcmtk"] = (_first_line([STORESCP, "--version"]) or "").strip("$ ").removeprefix("dcmtk: ")
    versions["orthanc"] = _first_line([ORTHANC, "--version"])
    commit = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 2**20, 1),
        "os": os_name,
        "python": platform.python_version(),
        "packages": versions,
        "git_commit": commit,
        "git_tracked_changes": dirty is not None,
        "filesystem_of_scratch": _filesystem(Path(tempfile.gettempdir())),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def _filesystem(path: Path) -> str | None:
    try:
        out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split()
    return lines[-1] if len(lines) > 1 else None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer studies and repetitions")
    parser.add_argument("--model-dir", type=Path, default=REPO / "onnx_models", help="REC-Net ONNX + card")
    parser.add_argument("--receivers", default=",".join(RECEIVERS), help="comma-separated subset")
    parser.add_argument("--senders", type=int, default=4, help="concurrent senders (half storescu)")
    parser.add_argument("--repetitions", type=int, help="override the mode's repetitions")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    mode = "quick" if args.quick else "full"
    plan = dict(MODES[mode])
    if args.repetitions:
        plan["repetitions"] = args.repetitions
    receivers = [r.strip() for r in args.receivers.split(",") if r.strip()]
    if "baseline" not in receivers:
        parser.error("the baseline receiver is required: every figure is a ratio against it")
    model_dir = args.model_dir.resolve()
    if not (model_dir / "recnet.card.json").is_file():
        print(f"no REC-Net model card in {model_dir}; pass --model-dir", file=sys.stderr)
        return 2
    missing = [
        p
        for p, r in ((STORESCP, "storescp"), (ORTHANC, "orthanc"))
        if r in receivers and not Path(p).exists()
    ]
    if missing or not Path("/usr/bin/storescu").exists():
        print(f"missing DCMTK/Orthanc binaries {missing}: `make system-deps`", file=sys.stderr)
        return 2

    started = datetime.now(UTC)
    t_start = time.monotonic()
    load_before = load_average()
    scratch = Path(tempfile.mkdtemp(prefix="qgate-bench-"))
    try:
        print(
            f"[bench] {mode}: corpus of {plan['studies']} studies × {plan['slices']} MR + 2 SEG", flush=True
        )
        corpus = build_corpus(scratch / "corpus", plan["studies"], plan["slices"])
        print(f"[bench] network: {receivers}, {plan['repetitions']} interleaved repetitions", flush=True)
        network = run_network(
            corpus,
            receivers=receivers,
            repetitions=plan["repetitions"],
            n_senders=args.senders,
            scratch=scratch,
            model_dir=model_dir,
            progress=lambda line: print(line, flush=True),
        )
        print(f"[bench] latency: {plan['latency_studies']} studies, one at a time", flush=True)
        latency = run_latency(
            corpus,
            n_studies=plan["latency_studies"],
            scratch=scratch,
            model_dir=model_dir,
            progress=lambda line: print(line, flush=True),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    results = {
        "mode": mode,
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - t_start, 1),
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "model_dir": str(model_dir),
        "model": _model_identity(model_dir),
        "corpus": corpus.describe(),
        "senders": sender_kinds(args.senders),
        "receivers": {name: _receiver_note(name) for name in receivers},
        "network": network,
        "latency": latency,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{mode}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (args.out / f"{mode}.md").write_text(render_markdown(results))
    print(f"[bench] wrote {args.out / (mode + '.json')} and {mode}.md", flush=True)
    print(render_markdown(results))
    zero_loss = (
        all(r["zero_loss"] for r in network["runs"]) and latency["instances_not_answered_success"] == 0
    )
    return 0 if zero_loss else 1


def _model_identity(model_dir: Path) -> dict[str, Any]:
    card = json.loads((model_dir / "recnet.card.json").read_text())
    onnx = model_dir / str(card.get("onnx_file", "recnet.onnx"))
    digest = hashlib.sha256(onnx.read_bytes()).hexdigest() if onnx.is_file() else None
    return {"name": card.get("name"), "version": card.get("version"), "onnx_sha256": digest}


def _receiver_note(name: str) -> str:
    from bench import network as net

    cls = {
        "baseline": net.BaselineReceiver,
        "gate": net.GateReceiver,
        "storescp": net.StorescpReceiver,
        "orthanc": net.OrthancReceiver,
    }[name]
    return cls.notes


def _fmt(spread: dict[str, float] | None, digits: int = 2) -> str:
    if not spread:
        return "–"
    return f"{spread['median']:.{digits}f} [{spread['min']:.{digits}f}–{spread['max']:.{digits}f}]"


def render_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    c = r["corpus"]
    s = r["network"]["summary"]
    lines = [
        f"# Benchmark ({r['mode']}), {r['date']}",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}; "
        f"Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
        + f"; scratch on {m['filesystem_of_scratch']}; commit {m['git_commit']}"
        + (" with uncommitted changes" if m["git_tracked_changes"] else "")
        + ".",
        f"Load average before/after: {r['load_average_before']} / {r['load_average_after']} "
        "(other work shares this machine: compare ratios, not absolute figures). "
        f"Took {r['duration_s']} s. REC-Net {r['model']['name']} {r['model']['version']} "
        f"(onnx sha256 {str(r['model']['onnx_sha256'])[:12]}) from {r['model_dir']}.",
        "",
        f"Corpus: {c['studies']} studies, {c['instances']} instances ({c['mr_instances']} MR of "
        f"~{c['mean_mr_bytes'] // 1000} kB, {c['seg_instances']} SEG), {c['bytes'] / 1e6:.1f} MB. "
        f"Senders at once: {', '.join(r['senders'])}.",
        "",
        "## Network (median [min–max] over interleaved runs)",
        "",
        "| receiver | instances/s | MB/s | × baseline wall time | × baseline CPU | peak RSS MiB "
        "| zero loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in s.items():
        lines.append(
            f"| {name} | {_fmt(row['instances_per_s'], 1)} | {_fmt(row['mb_per_s'], 1)} | "
            f"{_fmt(row['slowdown_vs_baseline'])} | {_fmt(row['cpu_ratio_vs_baseline'])} | "
            f"{_fmt(row['peak_rss_mib'], 0)} | {row['zero_loss_runs']}/{row['runs']} runs |"
        )
    lines += ["", "Receivers: " + "; ".join(f"**{k}** — {v}" for k, v in r["receivers"].items()) + "."]
    if "gate" in s:
        g = s["gate"]
        lines += [
            "",
            f"Gate: verification overlapped receiving in {g['verification_overlapped_runs']}/{g['runs']} "
            "runs "
            f"(verdicts recorded before the last instance was answered, per run: "
            f"{g['verdicts_during_receive']}); latency under this load, median of run medians: "
            f"{_fmt(g['latency_under_load_s'])} s.",
        ]
    lat = r["latency"]
    lines += [
        "",
        f"## Latency: last instance stored → verdict recorded ({lat['studies']} studies, one at a time, "
        f"{lat['segs']} SEGs: {lat['verdicts']})",
        "",
        "| stage | seconds, median [min–max] |",
        "|---|---|",
    ]
    for stage, spread in lat["by_stage_s"].items():
        lines.append(f"| {stage} | {_fmt(spread, 3)} |")
    lines += [
        "",
        f"First SEG of each study: {_fmt(lat['first_seg_of_study_latency_s'], 3)} s. "
        f"Bare verification of the same SEG in one process (read + verify): "
        f"{_fmt(lat['bare_verification_s'], 3)} s; "
        f"gate latency / bare: {_fmt(lat['latency_ratio_vs_bare'])}.",
        f"Gate peak RSS (VmHWM) after the latency run: {lat['gate_peak_rss_mib']} MiB.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
