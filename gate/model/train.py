"""pix2pix training of the REC-Net (arXiv 2310.16999, sec. 2; Isola et al. 2017).

Generator loss = BCE adversarial + lambda * reconstruction loss. The reconstruction loss is computed on
the composite (original outside the strip, reconstruction inside) averaged over strip pixels, because
that composite is exactly what the gate scores: with SSIM the loss is 1 - the gate's tile score, so
training optimises the verdict's own measure and spends no capacity on pixels the gate never looks at.
The discriminator likewise sees the composite, so it can only judge the painted strip.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from gate.model import data as data_mod
from gate.model.losses import ReconstructionLoss, composite, reconstruction_loss, strip_ssim
from gate.model.unet import PatchDiscriminator, UNetGenerator

log = logging.getLogger("gate.model")

CHECKPOINT_NAME = "recnet_last.pt"


@dataclass
class TrainConfig:
    """Everything that determines a training run; stored in the checkpoint and the model card."""

    out_dir: Path = Path("runs/recnet")
    steps: int = 4000
    batch_size: int = 24
    tile_size: int = 64
    strip_width: int = 2
    base_channels: int = 16
    depth: int = 3
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lambda_rec: float = 100.0
    reconstruction_loss: str = ReconstructionLoss.SSIM.value
    ssim_sigma: float = 1.5
    seed: int = 0
    threads: int = 1
    checkpoint_every: int = 100
    log_every: int = 20
    resume: bool = True
    max_minutes: float | None = None  # stop (with a checkpoint) after this wall time
    blobs_per_frame: int = 10
    icbm_step: int = 6
    icbm_axes: tuple[int, ...] = (1, 2)
    pydicom_files: tuple[str, ...] = data_mod.PYDICOM_TRAIN
    skull: bool = True

    def data_config(self) -> data_mod.DataConfig:
        return data_mod.DataConfig(
            tile_size=self.tile_size,
            strip_width=self.strip_width,
            seed=self.seed,
            blobs_per_frame=self.blobs_per_frame,
            icbm_step=self.icbm_step,
            icbm_axes=self.icbm_axes,
            pydicom_files=self.pydicom_files,
            skull=self.skull,
        )

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        d["betas"] = list(self.betas)
        d["icbm_axes"] = list(self.icbm_axes)
        d["pydicom_files"] = list(self.pydicom_files)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TrainConfig:
        d = dict(d)
        d["out_dir"] = Path(str(d["out_dir"]))
        for key in ("betas", "icbm_axes", "pydicom_files"):
            if key in d:
                d[key] = tuple(d[key])  # type: ignore[arg-type]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})  # type: ignore[arg-type]


def build_generator(cfg: TrainConfig) -> UNetGenerator:
    return UNetGenerator(base=cfg.base_channels, depth=cfg.depth)


def load_generator(checkpoint: Path) -> tuple[UNetGenerator, TrainConfig, dict[str, object]]:
    """The generator of a checkpoint in eval mode, its config and its training record."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_dict(state["config"])
    gen = build_generator(cfg)
    gen.load_state_dict(state["generator"])
    gen.eval()
    return gen, cfg, state.get("record", {})


def _save(path: Path, payload: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def train(config: TrainConfig) -> Path:
    """Train (or resume) the REC-Net; returns the path of the last checkpoint.

    Deterministic for a given seed: weights are seeded and batch ``s`` is drawn from seed ``(seed, s)``,
    so a resumed run continues with the batches the uninterrupted run would have seen.
    """
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT_NAME

    gen = build_generator(config)
    disc = PatchDiscriminator()
    opt_g = torch.optim.Adam(gen.parameters(), lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr, betas=config.betas)
    step = 0
    record: dict[str, object] = {"seconds": 0.0, "history": []}
    if config.resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        gen.load_state_dict(state["generator"])
        disc.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        step = int(state["step"])
        record = dict(state.get("record", record))
        log.info("resumed %s at step %d", ckpt_path, step)
    if step >= config.steps:
        return ckpt_path

    first_step = step
    started = time.perf_counter()
    seconds_before = float(record.get("seconds", 0.0))  # type: ignore[arg-type]
    frames = [
        data_mod.prepare(f, config.data_config()) for f in data_mod.training_frames(config.data_config())
    ]
    log.info("prepared %d training frames in %.1fs", len(frames), time.perf_counter() - started)
    batches = data_mod.batches(frames, config.batch_size, config.tile_size, config.seed, start_step=step)
    bce = nn.BCEWithLogitsLoss()

    def checkpoint() -> None:
        record["seconds"] = seconds_before + time.perf_counter() - started
        record["frames"] = len(frames)
        _save(
            ckpt_path,
            {
                "generator": gen.state_dict(),
                "discriminator": disc.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "step": step,
                "config": config.to_dict(),
                "record": record,
            },
        )

    gen.train()
    disc.train()
    window: list[tuple[float, float, float]] = []
    while step < config.steps:
        cond_np, target_np, strip_np = next(batches)
        cond, target, strip = (torch.from_numpy(a) for a in (cond_np, target_np, strip_np))
        fake = composite(gen(cond), target, strip)

        # Discriminator: real composites (= originals) vs painted ones.
        opt_d.zero_grad(set_to_none=True)
        d_real = disc(cond, target)
        d_fake = disc(cond, fake.detach())
        loss_d = 0.5 * (bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake)))
        loss_d.backward()
        opt_d.step()

        # Generator: fool the discriminator and reconstruct the strip.
        opt_g.zero_grad(set_to_none=True)
        d_fake = disc(cond, fake)
        loss_adv = bce(d_fake, torch.ones_like(d_fake))
        loss_rec = reconstruction_loss(
            config.reconstruction_loss, fake, target, strip, sigma=config.ssim_sigma
        )
        (loss_adv + config.lambda_rec * loss_rec).backward()
        opt_g.step()
        step += 1

        with torch.no_grad():
            score = strip_ssim(fake, target, strip, sigma=config.ssim_sigma).item()
        window.append((loss_d.item(), loss_adv.item(), score))
        if step % config.log_every == 0 or step == config.steps:
            n = len(window)
            ld, la, sc = (sum(v[i] for v in window) / n for i in range(3))
            elapsed = time.perf_counter() - started
            log.info(
                "step %d/%d  D %.3f  G_adv %.3f  strip SSIM %.4f  %.2fs/step",
                step, config.steps, ld, la, sc, elapsed / max(1, step - first_step),
            )  # fmt: skip
            history = record.setdefault("history", [])
            assert isinstance(history, list)
            history.append({"step": step, "loss_d": ld, "loss_adv": la, "strip_ssim": sc})
            window.clear()
        out_of_time = (
            config.max_minutes is not None and time.perf_counter() - started > 60 * config.max_minutes
        )
        if step % config.checkpoint_every == 0 or step == config.steps or out_of_time:
            checkpoint()
        if out_of_time:
            log.warning("stopping at step %d: time limit of %.1f min reached", step, config.max_minutes)
            break
    record["steps_done"] = step
    checkpoint()
    return ckpt_path
