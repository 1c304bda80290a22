"""Latency benchmark: seconds from a study's last stored instance to its SEG verdicts, by stage.

One fresh ``gate serve`` receives the studies one after the other (images, then the good and the
bad SEG, over one pynetdicom association); the next study is sent once both verdicts of the
previous one are recorded, so each figure is the unloaded latency. Stages are the timings the gate
records on ``seg_verifications`` (load, verify = reconstruct + ssim + bookkeeping, report, latency);
``wait`` is what latency leaves over: waking the assembler, assembling, and the other SEG of the
same study verified first. The baseline is the same verification done in this process on the same
files (read + verify, the model loaded once), so the gate's overhead is a ratio, not a raw time.
Peak memory: VmHWM of the gate process once all studies are done.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.network import (
    SEG_CLASS,
    SUCCESS,
    Corpus,
    CorpusFile,
    GateReceiver,
    PynetdicomSender,
    _spread,
    cpu_seconds,
    peak_rss_bytes,
)

STAGES = ("load", "verify", "reconstruct", "ssim", "report", "latency")


def bare_verification_seconds(corpus: Corpus, study_uids: Sequence[str], model_dir: Path) -> dict[str, float]:
    """Per SEG: seconds to read the SEG and its sources and verify them, in this process."""
    from gate.assemble.loader import load_verification_input, read_dataset
    from gate.assemble.references import referenced_source_uids
    from gate.verify.recnet import load_shipped_model
    from gate.verify.verifier import Verifier

    verifier = Verifier(load_shipped_model(model_dir))
    by_uid = {f.sop_instance_uid: f for f in corpus.files}
    seconds = {}
    for f in corpus.files:
        if f.sop_class_uid != SEG_CLASS or f.study_instance_uid not in study_uids:
            continue
        t0 = time.perf_counter()
        seg = read_dataset(f.path)
        sources = {uid: read_dataset(by_uid[uid].path) for uid in referenced_source_uids(seg)}
        verifier.verify(load_verification_input(seg, sources))
        seconds[f.sop_instance_uid] = time.perf_counter() - t0
    return seconds


def run_latency(
    corpus: Corpus,
    *,
    n_studies: int,
    scratch: Path,
    model_dir: Path,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    studies: list[list[CorpusFile]] = []
    for study in corpus.studies[:n_studies]:
        studies.append([f for f in corpus.files if f.study_instance_uid == study.study_instance_uid])
    study_uids = [s[0].study_instance_uid for s in studies]
    bare = bare_verification_seconds(corpus, study_uids, model_dir)

    workdir = Path(tempfile.mkdtemp(prefix="latency-", dir=scratch))
    gate = GateReceiver(workdir, model_dir)
    gate.start()
    per_seg: list[dict[str, Any]] = []
    lost = 0
    try:
        cpu0 = cpu_seconds(gate.pid)
        expected = 0
        for k, files in enumerate(studies):
            sender = PynetdicomSender(files, "BENCHLAT")
            t0 = time.perf_counter()
            sender.run(gate.port, gate.called_ae)
            send_s = time.perf_counter() - t0
            lost += sum(1 for f in files if sender.statuses.get(f.sop_instance_uid) != SUCCESS)
            expected += sum(1 for f in files if f.sop_class_uid == SEG_CLASS)
            rows = gate.wait_for_verdicts(expected)
            for row in rows:
                if row["study_instance_uid"] != files[0].study_instance_uid:
                    continue
                timings = row["timings"] or {}
                seg_uid = row["seg_sop_instance_uid"]
                entry = {
                    "study": k,
                    "seg_sop_instance_uid": seg_uid,
                    "state": row["state"],
                    "verdict": row["verdict"],
                    "send_s": round(send_s, 4),
                    **{s: round(timings[s], 4) for s in STAGES if s in timings},
                    "bare_verification_s": round(bare.get(seg_uid, float("nan")), 4),
                }
                if "latency" in timings:
                    busy = sum(timings.get(s, 0.0) for s in ("load", "verify", "report"))
                    entry["wait"] = round(timings["latency"] - busy, 4)
                    if seg_uid in bare:
                        entry["latency_ratio_vs_bare"] = round(timings["latency"] / bare[seg_uid], 2)
                per_seg.append(entry)
                progress(
                    f"  study {k} SEG …{seg_uid[-8:]} {row['verdict'] or row['state']}: "
                    f"latency {entry.get('latency', float('nan')):.2f} s "
                    f"(bare verification {entry['bare_verification_s']:.2f} s)"
                )
        undecided = [e for e in per_seg if e["state"] == "waiting"]
        excerpt = gate.log_excerpt() if undecided or len(per_seg) < expected else []
        cpu1 = cpu_seconds(gate.pid)
        rss = peak_rss_bytes(gate.pid)
    finally:
        gate.stop()
    shutil.rmtree(workdir, ignore_errors=True)

    stages = {s: _spread(e[s] for e in per_seg if s in e) for s in (*STAGES, "wait")}
    firsts = [e["latency"] for e in per_seg if "latency" in e and _is_first_of_study(e, per_seg)]
    return {
        "studies": len(studies),
        "segs": len(per_seg),
        "instances_not_answered_success": lost,
        "per_seg": per_seg,
        "by_stage_s": stages,
        "first_seg_of_study_latency_s": _spread(firsts),
        "bare_verification_s": _spread(bare.values()),
        "latency_ratio_vs_bare": _spread(
            e["latency_ratio_vs_bare"] for e in per_seg if "latency_ratio_vs_bare" in e
        ),
        "gate_peak_rss_mib": None if rss is None else round(rss / 2**20, 1),
        "gate_cpu_s": None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 2),
        **({"gate_log_excerpt": excerpt} if excerpt else {}),
        "verdicts": dict(Counter(str(e["verdict"] or e["state"]) for e in per_seg)),
    }


def _is_first_of_study(entry: dict[str, Any], entries: Sequence[dict[str, Any]]) -> bool:
    same = [e for e in entries if e["study"] == entry["study"] and "latency" in e]
    return entry is min(same, key=lambda e: e["latency"])
