"""One training loop and one evaluation function for everything that trains.

Sweeps, ``ecg-sweep train``, fine-tuning after pruning and quantization-aware training all call
:func:`fit`. The engine knows nothing of Optuna or MLflow: they plug in through
``on_epoch_end(epoch, metrics)``, which may raise to stop training (e.g. ``optuna.TrialPruned``).
User interfaces plug in through ``progress(what, done, total)``, called after every batch with
samples done; its time is kept out of the measured training throughput.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ecg_sweep.config import TrainConfig
from ecg_sweep.data.dataset import PreparedData, Split
from ecg_sweep.errors import ConfigError
from ecg_sweep.metrics import (
    classification_report,
    fit_temperature,
    macro_auc,
    macro_f1,
    majority_baseline,
    subgroup_report,
    thresholds_for_policy,
)
from ecg_sweep.models import ECGClassifier, save_checkpoint

__all__ = [
    "FitResult",
    "augment_batch",
    "applied_settings",
    "FitTimeout",
    "ProgressHook",
    "fit",
    "evaluate",
    "predict_proba",
    "rescale",
    "final_metrics",
    "resolve_device",
    "eval_mode",
    "seed_everything",
    "train_one_epoch",
    "time_train_steps",
]

log = logging.getLogger(__name__)

EpochHook = Callable[[int, dict[str, float]], None]
# progress(what, done, total): e.g. ("epoch 3 train", 640, 17418) samples; must be cheap and
# never touch tensors (no device sync).
ProgressHook = Callable[[str, int, int], None]


class _TimedHook:
    """Calls ``hook`` and adds up the seconds spent in it (subtracted from timed regions)."""

    def __init__(self, hook: ProgressHook | None):
        self.hook = hook
        self.seconds = 0.0

    def __call__(self, what: str, done: int, total: int) -> None:
        if self.hook is not None:
            t = time.perf_counter()
            self.hook(what, done, total)
            self.seconds += time.perf_counter() - t

    def phase(self, what: str) -> Callable[[int, int], None] | None:
        """A ``(done, total)`` callback for one phase, or None without a hook."""
        if self.hook is None:
            return None
        return lambda done, total: self(what, done, total)


class FitTimeout(Exception):
    """Training passed its deadline; ``history`` holds the epochs that finished."""

    def __init__(self, seconds: float, history: list[dict[str, float]]):
        super().__init__(f"training stopped after {seconds:.0f} s (time limit reached)")
        self.seconds = seconds
        self.history = history


@dataclass
class FitResult:
    best_epoch: int
    best_val_macro_auc: float
    history: list[dict[str, float]]
    stop_reason: str  # "max_epochs" | "patience"
    seconds: float
    train_samples_per_s: float
    device: str
    checkpoint: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def resolve_device(name: str) -> torch.device:
    """auto -> cuda if available, else cpu; an unavailable cuda is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device must be auto, cpu or cuda[:N], not {name!r}") from None


def applied_settings(cfg: TrainConfig) -> dict[str, str | bool]:
    """``device``, ``amp`` and ``channels_last`` as :func:`fit` applies them: the resolved
    device; autocast and the channels-last layout act on CUDA only (see ``_autocast``)."""
    device = resolve_device(cfg.device)
    on_cuda = device.type == "cuda"
    return {
        "device": str(device),
        "amp": bool(cfg.amp and on_cuda),
        "channels_last": bool(cfg.channels_last and on_cuda),
    }


def eval_mode(model: nn.Module) -> nn.Module:
    """``model.eval()``, tolerating modules that refuse it: a torch.export (pt2) module loaded
    from MLflow raises NotImplementedError and is always in the mode it was exported in, eval."""
    with contextlib.suppress(NotImplementedError):
        model.eval()
    return model


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (call before building the model)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _autocast(device: torch.device, enabled: bool):
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


class _Tensors:
    """A split as torch tensors, on the device when it fits (indexing there avoids copies)."""

    def __init__(self, split: Split, device: torch.device):
        x = torch.from_numpy(split.x)  # (N, 12, T) float16, shares memory with the numpy array
        y = torch.from_numpy(split.y)
        on_device = device.type == "cuda" and x.numel() * 2 < 4 * 2**30
        self.x = x.to(device) if on_device else x
        self.y = y.to(device)
        self.device = device
        self.n = len(split)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xb = self.x[idx.to(self.x.device)].to(self.device, non_blocking=True).float()
        return xb, self.y[idx.to(self.y.device)]


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases, norms, embeddings and tokens (1-D params or token params).
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "dist_token")):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "adam":
        # Adam's weight decay is L2 in the gradient (the reference EfficientNetV2 used plain Adam).
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    total = max(cfg.max_epochs * steps_per_epoch, warmup + 1)

    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return fn


def augment_batch(
    x: torch.Tensor, cfg: TrainConfig, generator: torch.Generator, sampling_rate: int
) -> torch.Tensor:
    """The training recipe's signal augmentations of a (B, 12, T) millivolt batch.

    Each part runs when its strength is > 0 (see the ``aug_*`` fields of TrainConfig): amplitude
    scaling per record, Gaussian noise per sample, baseline wander (one 0.05-0.5 Hz sinusoid per
    record, as from breathing or electrode motion, on every lead), a circular time shift and
    lead dropout. Random draws come from ``generator`` (CPU, seeded by ``fit``), so a run is
    reproducible whatever the device; a new tensor is returned, ``x`` is left alone.
    """
    b, c, t = x.shape

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator).to(x.device)

    if cfg.aug_scale > 0:
        x = x * (1 + cfg.aug_scale * (2 * rand(b, 1, 1) - 1))
    # (B, 1, 1): the record's own amplitude, so noise and wander strengths are relative
    amp = x.std(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    if cfg.aug_noise > 0:
        noise = torch.randn(b, c, t, generator=generator).to(x.device)
        x = x + cfg.aug_noise * amp * noise
    if cfg.aug_wander > 0:
        freq, phase, size = rand(b, 1, 1), rand(b, 1, 1), rand(b, 1, 1)
        seconds = torch.arange(t, device=x.device, dtype=x.dtype) / sampling_rate  # (T,)
        wave = torch.sin(2 * math.pi * ((0.05 + 0.45 * freq) * seconds + phase))  # (B, 1, T)
        x = x + cfg.aug_wander * amp * size * wave
    max_shift = int(cfg.aug_shift * t)
    if max_shift > 0:
        shift = torch.randint(-max_shift, max_shift + 1, (b, 1), generator=generator)
        idx = (torch.arange(t).unsqueeze(0) - shift) % t  # (B, T): circular shift per record
        x = x.gather(2, idx.unsqueeze(1).expand(b, c, t).to(x.device))
    if cfg.aug_lead_dropout > 0:
        x = x * (rand(b, c, 1) >= cfg.aug_lead_dropout).to(x.dtype)
    return x


def _soft_bce(logits: torch.Tensor, teacher_probs: torch.Tensor, t: float) -> torch.Tensor:
    """Multi-label soft distillation: the student's logits softened by T match the teacher's
    temperature-softened sigmoid outputs; T^2 keeps the gradient scale (Hinton et al.)."""
    return F.binary_cross_entropy_with_logits(logits / t, teacher_probs) * (t * t)


def _loss(
    out: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    y: torch.Tensor,
    teacher_probs: torch.Tensor | None,
    cfg: TrainConfig,
) -> torch.Tensor:
    a, t = cfg.distill_alpha, cfg.distill_temperature
    if not isinstance(out, tuple):
        label = F.binary_cross_entropy_with_logits(out.float(), y)
        if teacher_probs is None:
            return label
        # One head and a teacher (e.g. fine-tuning a pruned model against its unpruned self).
        return a * label + (1 - a) * _soft_bce(out.float(), teacher_probs, t)
    cls, dist = out[0].float(), out[1].float()
    if teacher_probs is None:
        # DeiT without a teacher: both heads learn the labels.
        return 0.5 * (
            F.binary_cross_entropy_with_logits(cls, y) + F.binary_cross_entropy_with_logits(dist, y)
        )
    # DeiT: the class head learns the labels, the distillation head the teacher.
    return a * F.binary_cross_entropy_with_logits(cls, y) + (1 - a) * _soft_bce(
        dist, teacher_probs, t
    )


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    amp: bool = True,
    temperature: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """(N, 12, T) millivolts -> (N, C) sigmoid probabilities, in eval mode, batched.

    ``progress(done, total)`` is called after every batch with records done."""
    device = torch.device(device)
    eval_mode(model)
    xt = torch.from_numpy(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    out = []
    for i in range(0, len(xt), batch_size):
        xb = xt[i : i + batch_size].to(device, non_blocking=True).float()
        with _autocast(device, amp):
            logits = model(xb)
        out.append(torch.sigmoid(logits.float() / temperature).cpu())
        if progress is not None:
            progress(min(i + batch_size, len(xt)), len(xt))
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    amp: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, float]:
    """Probabilities (N, C) and mean BCE loss of ``model`` on ``split`` (eval mode)."""
    probs = predict_proba(model, split.x, device, batch_size, amp, progress=progress)
    p = torch.from_numpy(probs).clamp(1e-7, 1 - 1e-7)
    y = torch.from_numpy(split.y)
    loss = F.binary_cross_entropy(p, y).item()
    return probs, loss


def train_one_epoch(
    model: nn.Module,
    data: _Tensors,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    cfg: TrainConfig,
    generator: torch.Generator,
    teacher_probs: torch.Tensor | None = None,
    scaler: torch.amp.GradScaler | None = None,
    deadline: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    sampling_rate: int = 100,
) -> tuple[float, int]:
    """One pass over the training data; returns (mean loss, samples seen).

    ``progress(done, total)`` is called after every optimizer step with samples done. With
    ``cfg.augment`` every batch goes through :func:`augment_batch` first."""
    model.train()
    if isinstance(model, ECGClassifier):
        model.set_distilled_training(True)
    device = data.device
    perm = torch.randperm(data.n, generator=generator)
    total = torch.zeros((), device=device)
    seen = 0
    for start in range(0, data.n, cfg.batch_size):
        idx = perm[start : start + cfg.batch_size]
        if len(idx) < 2:  # batch norm cannot train on a single sample
            continue
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError
        xb, yb = data.batch(idx)
        if cfg.augment:
            xb = augment_batch(xb, cfg, generator, sampling_rate)
        tp = teacher_probs[idx.to(teacher_probs.device)] if teacher_probs is not None else None
        with _autocast(device, cfg.amp):
            out = model(xb)
        loss = _loss(out, yb, tp, cfg)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        total += loss.detach() * len(idx)  # no .item(): no device sync per step
        seen += len(idx)
        if progress is not None:
            progress(start + len(idx), data.n)
    return (total.item() / max(seen, 1)), seen


_SCREEN_BATCH = 8


def time_train_steps(
    model: nn.Module,
    data: PreparedData,
    cfg: TrainConfig,
    steps: int = 3,
    stop_above: float | None = None,
    max_share: float = 0.02,
) -> float:
    """Seconds per training sample of ``model`` under ``cfg``, timed on a few optimizer steps.

    The same forward, loss, backward, clipping and optimizer step as :func:`fit`, on random
    training batches of ``cfg.batch_size`` (a local generator: the global RNG is untouched),
    after one untimed step on 2 records (lazy initialization); the median step counts. ``model``
    IS trained by these steps: pass a copy. Stops after the first timed step once ``stop_above``
    seconds per sample are exceeded (a configuration that slow needs no more steps to be
    judged; one twice over it on a screening batch of 8 is judged from that batch), or once the timed steps add up to ``max_share`` of the whole training they project
    (``cfg.max_epochs`` epochs over ``data.train``): on small data, a few batches are an epoch.
    """
    device = resolve_device(cfg.device)
    model.to(device)
    model.train()
    if isinstance(model, ECGClassifier):
        model.set_distilled_training(True)
    optimizer = _make_optimizer(model, cfg)
    n = len(data.train)
    bs = max(2, min(cfg.batch_size, n))
    g = torch.Generator().manual_seed(cfg.seed)
    # (batch size, role): an untimed warm-up step on 2 records; with a limit and big batches, a
    # screening step on 8 (per sample, small batches are rarely cheaper than full ones: a
    # configuration 2x over the limit there is judged over it without paying a full batch, its
    # projection then an upper estimate); then the timed steps.
    plan = [(2, "warmup")]
    if stop_above is not None and bs > _SCREEN_BATCH:
        plan.append((_SCREEN_BATCH, "screen"))
    plan += [(bs, "timed")] * steps
    timed: list[float] = []
    for size, role in plan:
        idx = torch.randint(n, (size,), generator=g).sort().values.numpy()
        xb = torch.from_numpy(data.train.x[idx]).to(device).float()
        yb = torch.from_numpy(data.train.y[idx]).to(device)
        t = time.perf_counter()
        with _autocast(device, cfg.amp):
            out = model(xb)
        loss = _loss(out, yb, None, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        per_sample = (time.perf_counter() - t) / size
        if role == "warmup":
            continue
        if role == "screen":
            if per_sample > 2 * stop_above:
                timed.append(per_sample)
                break
            continue
        timed.append(per_sample)
        if stop_above is not None and min(timed) > stop_above:
            break
        if sum(timed) * bs >= max_share * float(np.median(timed)) * n * cfg.max_epochs:
            break
    model.eval()
    return float(np.median(timed))


def fit(
    model: ECGClassifier,
    data: PreparedData,
    cfg: TrainConfig,
    *,
    teacher: nn.Module | None = None,
    on_epoch_end: EpochHook | None = None,
    checkpoint: str | Path | None = None,
    time_limit: float | None = None,
    progress: ProgressHook | None = None,
) -> FitResult:
    """Train ``model`` on ``data.train``, select on ``data.val``; the best weights are loaded back.

    Early stopping on validation macro AUROC with ``cfg.patience``; the best checkpoint is
    written atomically to ``checkpoint`` (a temp file if None) and reloaded with
    ``weights_only=True``. ``time_limit`` seconds bound the whole call (raises
    :class:`FitTimeout`). ``on_epoch_end(epoch, metrics)`` sees ``train_loss``, ``val_loss``,
    ``val_macro_auc``, ``val_macro_f1`` (at threshold 0.5), ``lr``, ``epoch_seconds`` and
    ``train_samples_per_s``. With a ``teacher``, a DeiT's distillation head learns the teacher's
    soft outputs; any other model mixes label and distillation loss on its one head
    (``cfg.distill_alpha`` on the labels, temperature ``cfg.distill_temperature``).
    ``progress(what, done, total)`` sees every batch (``"epoch E train"`` / ``"epoch E
    validate"``, samples); the time it takes is not counted in ``train_samples_per_s``.
    """
    hook = _TimedHook(progress)
    device = resolve_device(cfg.device)
    t0 = time.monotonic()
    deadline = t0 + time_limit if time_limit else None
    model.to(device)
    if device.type == "cuda" and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    train = _Tensors(data.train, device)
    steps = max(1, math.ceil(train.n / cfg.batch_size))
    optimizer = _make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps))
    scaler = (
        torch.amp.GradScaler("cuda")
        if device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported()
        else None
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    teacher_probs = None
    if teacher is not None:
        # The teacher's soft targets do not change between epochs: compute them once.
        teacher.to(device)
        teacher_probs = torch.from_numpy(
            predict_proba(
                teacher, data.train.x, device, cfg.eval_batch_size, cfg.amp, cfg.distill_temperature
            )
        ).to(device)
        teacher.cpu()

    tmpdir = None
    if checkpoint is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="ecg-sweep-fit-")
        checkpoint = Path(tmpdir.name) / "fit-best-weights.pt"
    checkpoint = Path(checkpoint)
    history: list[dict[str, float]] = []
    best_auc, best_epoch, bad_epochs = -math.inf, -1, 0
    stop_reason = "max_epochs"
    train_seconds, train_seen = 0.0, 0
    try:
        for epoch in range(cfg.max_epochs):
            te = time.monotonic()
            try:
                train_loss, seen = train_one_epoch(
                    model,
                    train,
                    optimizer,
                    scheduler,
                    cfg,
                    generator,
                    teacher_probs,
                    scaler,
                    deadline,
                    hook.phase(f"epoch {epoch} train"),
                    data.sampling_rate,
                )
            except TimeoutError:
                raise FitTimeout(time.monotonic() - t0, history) from None
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            # The progress hook's own time is not training time.
            epoch_train_seconds = time.monotonic() - te - hook.seconds
            hook.seconds = 0.0
            train_seconds += epoch_train_seconds
            train_seen += seen
            probs, val_loss = evaluate(
                model,
                data.val,
                device,
                cfg.eval_batch_size,
                cfg.amp,
                progress=hook.phase(f"epoch {epoch} validate"),
            )
            val_auc = macro_auc(data.val.y, probs)
            metrics = {
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_macro_auc": val_auc,
                "val_macro_f1": macro_f1(data.val.y, probs, 0.5),
                "lr": optimizer.param_groups[0]["lr"],
                "epoch_seconds": time.monotonic() - te,
                "train_samples_per_s": seen / max(epoch_train_seconds, 1e-9),
            }
            history.append(metrics)
            improved = math.isfinite(val_auc) and val_auc > best_auc
            if improved:
                best_auc, best_epoch, bad_epochs = val_auc, epoch, 0
                save_checkpoint(model, checkpoint)
            else:
                bad_epochs += 1
            log.debug("epoch %d %s", epoch, metrics)
            if on_epoch_end is not None:
                on_epoch_end(epoch, metrics)
            if bad_epochs >= cfg.patience:
                stop_reason = "patience"
                break
            if deadline is not None and time.monotonic() > deadline and epoch < cfg.max_epochs - 1:
                raise FitTimeout(time.monotonic() - t0, history)
        if best_epoch >= 0:
            state = torch.load(checkpoint, map_location=device, weights_only=True)["state_dict"]
            model.load_state_dict(state)
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()
    model.eval()
    return FitResult(
        best_epoch=best_epoch,
        best_val_macro_auc=float(best_auc) if best_epoch >= 0 else float("nan"),
        history=history,
        stop_reason=stop_reason,
        seconds=time.monotonic() - t0,
        train_samples_per_s=train_seen / train_seconds if train_seconds > 0 else float("nan"),
        device=str(device),
        checkpoint=None if tmpdir is not None else checkpoint,
    )


def rescale(p: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T): probabilities of logits divided by the temperature."""
    if temperature == 1.0:
        return p
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return (1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / temperature))).astype(np.float32)


def final_metrics(
    model: nn.Module, data: PreparedData, cfg: TrainConfig
) -> tuple[dict[str, float], np.ndarray, dict[str, np.ndarray]]:
    """Calibrate and set decision thresholds on validation, then evaluate the test fold once.

    With ``cfg.calibrate`` a temperature is fitted on validation (``calibration_temperature``,
    1.0 without) and every probability is rescaled by it. Thresholds follow
    ``cfg.threshold_policy`` on the (rescaled) validation probabilities, decisions add
    ``cfg.at_least_one``. Returns (metrics: ``final_val_*``, ``calibration_temperature``, the
    ``test_*`` names of DESIGN.md §4 with calibration, subgroups and
    ``test_baseline_exact_match_accuracy``; thresholds; probabilities per split).
    """
    device = resolve_device(cfg.device)
    model.to(device)
    val_p = predict_proba(model, data.val.x, device, cfg.eval_batch_size, cfg.amp)
    test_p = predict_proba(model, data.test.x, device, cfg.eval_batch_size, cfg.amp)
    temperature = 1.0
    if cfg.calibrate:
        logits = np.log(np.clip(val_p, 1e-7, 1 - 1e-7) / np.clip(1 - val_p, 1e-7, 1))
        temperature = fit_temperature(data.val.y, logits)
        val_p, test_p = rescale(val_p, temperature), rescale(test_p, temperature)
    thresholds = thresholds_for_policy(
        cfg.threshold_policy, data.val.y, val_p, at_least_one=cfg.at_least_one
    )
    # Not "val_macro_auc"/"val_macro_f1": those names are the per-epoch curves (threshold 0.5).
    metrics = {
        "final_val_macro_auc": macro_auc(data.val.y, val_p),
        "final_val_macro_f1_tuned": macro_f1(data.val.y, val_p, thresholds, cfg.at_least_one),
        "calibration_temperature": temperature,
    }
    metrics.update(
        classification_report(
            data.test.y,
            test_p,
            thresholds,
            data.classes,
            "test",
            cfg.n_bootstrap,
            cfg.seed,
            at_least_one=cfg.at_least_one,
        )
    )
    base = majority_baseline(data.train.y, data.test.y)
    metrics["test_baseline_exact_match_accuracy"] = base["test_exact_match_accuracy"]
    if data.test.sex is not None and data.test.age is not None:
        metrics.update(subgroup_report(data.test.y, test_p, data.test.sex, data.test.age, "test"))
    return metrics, thresholds, {"val": val_p, "test": test_p}
