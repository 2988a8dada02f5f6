"""How user-personalization is trained: users → windows → batches → steps → the kept weights.

* Data: each user's interactions in time order, cut into windows of ``bptt`` (newest first);
  every position predicts the next item. ``validation_users`` users hold their last item out
  for early stopping; the rest of their history trains.
* Batches: windows of similar length together (less padding to compute on), shuffled.
* Loss: full softmax cross-entropy over every next item while the catalogue has at most
  ``full_softmax_max_items`` items, fused and chunked (:mod:`recsys.recipes.losses`); above
  that, sampled softmax with an alias sampler over smoothed popularity and the logQ
  correction (:mod:`recsys.recipes.sampling`).
* Optimiser: AdamW (a lazy SparseAdam for the catalogue tables in sampled mode), bf16
  autocast where the CPU has AMX/AVX-512-bf16 (``precision``). The learning rate warms up
  linearly for ``warmup_steps`` steps and then, with ``lr_decay: cosine``, follows a cosine to
  ``min_lr_ratio`` of itself over the run's horizon — the epoch limit or the time budget,
  whichever comes first — so a run cut by its budget still ends at a small learning rate.
* Weight averaging: with ``ema_decay`` > 0 validation, early stopping and the kept weights
  use an exponential moving average of the weights (Polyak averaging), which smooths the
  step-to-step noise that makes the best epoch a coin toss at a high learning rate.
* Stopping: early stopping on the NDCG@10 of each validation user's held-out item (the best
  epoch's weights are kept), the time budget, the epoch limit; :attr:`Trainer.report` says
  which and carries the validation curve.
* Deterministic given the seed: torch's generator, numpy's (shuffles, dropout masks, the
  negative sampler) all derive from it.
"""

from __future__ import annotations

import copy
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from recsys.errors import ConfigError, DataError
from recsys.logs import get_logger
from recsys.recipes.losses import full_softmax_loss
from recsys.recipes.sampling import AliasSampler, sampled_softmax_loss

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization import UserPersonalization

#: Largest users × items score block held at once while validating (floats).
SCORE_ELEMENTS = 1 << 25

log = get_logger(__name__)

Window = tuple[np.ndarray, np.ndarray, np.ndarray]  # (input codes, target codes, weights)


def split_users(histories, weights, hp: dict[str, Any], rng, validate: bool = True):
    """Training sequences (history trims applied) and validation users (last item held)."""
    lengths = np.array([len(h) for h in histories])
    active = np.flatnonzero(lengths >= 2)
    if len(active) == 0:
        raise DataError("user-personalization: no user has 2 or more interactions")
    lo = np.quantile(lengths[active], float(hp["min_user_history_length_percentile"]))
    hi = np.quantile(lengths[active], float(hp["max_user_history_length_percentile"]))
    keep = active[(lengths[active] >= lo) & (lengths[active] <= max(hi, 2))]
    n_val = min(int(hp["validation_users"]), len(keep)) if validate else 0
    val_users = np.sort(rng.choice(keep, size=n_val, replace=False)) if n_val else keep[:0]
    is_val = np.zeros(len(histories), dtype=bool)
    is_val[val_users] = True
    starts = np.concatenate([[0], np.cumsum(lengths)])
    seqs = []
    for u in keep:
        h = histories[u][:-1] if is_val[u] else histories[u]
        w = None if weights is None else weights[starts[u] : starts[u] + len(h)]
        if len(h) >= 2:
            seqs.append((h, w))
    return seqs, val_users


def drop_items(seqs, p: float, rng):
    """Each sequence with each item left out with probability ``p`` (its weights with it);
    at least two items stay, so every sequence still has a target. ``p`` 0: ``seqs`` itself."""
    if p <= 0:
        return seqs
    out = []
    for h, w in seqs:
        keep = rng.random(len(h)) >= p
        if keep.sum() < 2:
            keep[-2:] = True
        out.append((h[keep], None if w is None else w[keep]))
    return out


def windows(seqs, max_len: int, recency: bool) -> list[Window]:
    """Cut every sequence into (input, target, weight) windows of ``max_len``, newest first.
    ``recency``: Personalize's recency mask, weights rising from 0.5 (oldest) to 1 (newest)."""
    out = []
    for h, w in seqs:
        n = len(h)
        pos_w = (0.5 + 0.5 * np.arange(1, n) / max(n - 1, 1)) if recency else np.ones(n - 1)
        if w is not None:
            pos_w = pos_w * w[1:]
        end = n - 1
        while end > 0:
            start = max(0, end - max_len)
            out.append((h[start:end], h[start + 1 : end + 1], pos_w[start:end]))
            end = start
    return out


def batches(wins: list[Window], batch_size: int, rng) -> list[list[Window]]:
    """Shuffled batches of windows of similar length (less padding to compute on)."""
    order = rng.permutation(len(wins))
    # sort within chunks of 50 batches by length, then shuffle the batches
    chunk = batch_size * 50
    out = []
    for c in range(0, len(order), chunk):
        idx = sorted(order[c : c + chunk], key=lambda i: len(wins[i][0]))
        out += [[wins[i] for i in idx[b : b + batch_size]] for b in range(0, len(idx), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def batch_tensors(wins: list[Window], device: torch.device):
    """Left-padded (x, y, w) tensors, as wide as the batch's longest window (positions stay
    right-aligned, so trimming leading padding changes nothing)."""
    L = max(len(w[0]) for w in wins)
    B = len(wins)
    x = np.zeros((B, L), dtype=np.int64)
    y = np.zeros((B, L), dtype=np.int64)
    w = np.zeros((B, L), dtype=np.float32)
    for r, (xi, yi, wi) in enumerate(wins):
        k = len(xi)
        x[r, L - k :] = xi + 1
        y[r, L - k :] = yi + 1
        w[r, L - k :] = wi
    return (
        torch.from_numpy(x).to(device),
        torch.from_numpy(y).to(device),
        torch.from_numpy(w).to(device),
    )


def optimizers(model, hp: dict[str, Any], sampled: bool) -> list[torch.optim.Optimizer]:
    """AdamW over everything; in sampled mode the catalogue-sized tables get sparse
    gradients and a lazy SparseAdam, so a step costs what the batch touches, not what
    the catalogue holds (a 1M × d table updated densely every step would dominate)."""
    lr, wd = float(hp["learning_rate"]), float(hp["weight_decay"])
    if not sampled:
        return [torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)]
    sparse = {id(p) for p in model.sparse_parameters()}
    dense = [p for p in model.parameters() if id(p) not in sparse]
    return [
        torch.optim.AdamW(dense, lr=lr, weight_decay=wd),
        torch.optim.SparseAdam(model.sparse_parameters(), lr=lr),
    ]


class LearningRate:
    """Linear warm-up over ``warmup_steps`` steps, then constant (``decay="none"``) or a
    cosine from 1 to ``min_ratio`` over the horizon. ``progress`` (0..1) is how far the run
    is through its horizon: the larger of the epochs' and the time budget's fractions."""

    def __init__(self, warmup_steps: int, decay: str, min_ratio: float) -> None:
        if decay not in ("none", "cosine"):
            raise ConfigError(
                f"user-personalization: lr_decay must be none or cosine, not {decay!r}"
            )
        self.warmup_steps = max(int(warmup_steps), 0)
        self.decay = decay
        self.min_ratio = float(min_ratio)

    def factor(self, step: int, progress: float) -> float:
        """The multiplier of the base learning rate at optimiser step ``step`` (1-based)."""
        warm = min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0
        if self.decay == "none":
            return warm
        p = min(max(progress, 0.0), 1.0)
        return warm * (
            self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
        )


class WeightAverage:
    """Exponential moving average of a model's floating-point parameters and buffers."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.params = [p for p in model.parameters()]
        self.shadow = [p.detach().clone() for p in self.params]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        # early on the average follows the weights closely (bias-corrected decay)
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - d)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the model's weights and the average (call twice to undo)."""
        for p, s in zip(self.params, self.shadow, strict=True):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


class Trainer:
    """One training run of ``recipe.model`` (see the module docstring)."""

    def __init__(self, recipe: UserPersonalization, seqs, val_users, histories, counts,
                 epochs: int, budget: float | None, options, rng) -> None:  # fmt: skip
        self.recipe = recipe
        self.hp = recipe.hyperparameters
        self.model = recipe.model
        self.seqs, self.val_users, self.histories = seqs, val_users, histories
        self.counts, self.epochs, self.budget = counts, epochs, budget
        self.options, self.rng = options, rng
        self.device = recipe._device
        self.sampled = self.model.n_items > int(self.hp["full_softmax_max_items"])
        self.schedule = LearningRate(
            int(self.hp["warmup_steps"]), str(self.hp["lr_decay"]), float(self.hp["min_lr_ratio"])
        )
        if self.sampled:
            q = (counts + 1.0) ** 0.75
            q = q / q.sum()
            self.sampler = AliasSampler(q, seed=options.seed)
            self.log_q = torch.as_tensor(np.log(q), dtype=torch.float32, device=self.device)

    def step_loss(self, x, y, w) -> tuple[torch.Tensor, int]:
        """The batch's weighted mean loss and its number of targets."""
        model, hp = self.model, self.hp
        if self.sampled:
            neg = torch.as_tensor(
                self.sampler.sample(int(hp["num_negatives"])) + 1, device=self.device
            )
            # only the rows this batch touches: padding (0), inputs, targets, negatives
            codes = torch.unique(torch.cat([x.new_zeros(1), x.ravel(), y.ravel(), neg]))
            z = model.item_vectors(codes, sparse=True)
            hid = model.encode(torch.searchsorted(codes, x), z)
            mask = y > 0
            rows = (codes - 1).clamp_min(0)
            loss = sampled_softmax_loss(
                hid[mask],
                torch.searchsorted(codes, y[mask]),
                z,
                model.item_bias[rows],
                torch.searchsorted(codes, neg),
                self.log_q[rows],
                w[mask],
            )
            return loss, int(mask.sum())
        z = model.item_vectors()
        hid = model.encode(x, z)
        mask = y > 0
        t = y[mask] - 1
        # fused + chunked: no N × V logit matrix kept (recipes/losses.py)
        loss = full_softmax_loss(
            hid[mask], z[1:], model.item_bias, t, w[mask], low_precision=self.recipe._use_bf16()
        )
        return loss, len(t)

    def run(self) -> dict[str, Any]:
        recipe, model, hp = self.recipe, self.model, self.hp
        opts = optimizers(model, hp, self.sampled)
        base_lr = [[g["lr"] for g in o.param_groups] for o in opts]
        ema_decay = float(hp["ema_decay"])
        ema = WeightAverage(model, ema_decay) if ema_decay > 0 else None
        budget, epochs = self.budget, self.epochs
        best, best_state, bad = -1.0, None, 0
        started = time.perf_counter()
        bs = int(hp["batch_size"])
        out_of_time = False
        validating = len(self.val_users) > 0
        curve: list[float] = []
        reason, best_epoch, epoch, step, f = "epochs", 0, 0, 0, 1.0
        for epoch in range(1, epochs + 1):
            model.train()
            total, n_tok = 0.0, 0
            epoch_start = time.perf_counter()
            seqs = drop_items(self.seqs, float(hp["item_drop"]), self.rng)
            todo = batches(windows(seqs, recipe.max_len, bool(hp["recency_mask"])), bs, self.rng)
            for b, batch in enumerate(todo):
                step += 1
                # horizon: the epoch limit or the budget, whichever is nearer
                progress = (epoch - 1 + b / len(todo)) / epochs
                if budget is not None and not math.isinf(budget):
                    progress = max(progress, (time.perf_counter() - started) / budget)
                f = self.schedule.factor(step, progress)
                for o, lrs in zip(opts, base_lr, strict=True):
                    for g, lr in zip(o.param_groups, lrs, strict=True):
                        g["lr"] = lr * f
                x, y, w = batch_tensors(batch, self.device)
                with recipe._autocast():
                    loss, n = self.step_loss(x, y, w)
                for o in opts:
                    o.zero_grad(set_to_none=True)
                loss.backward()
                for o in opts:
                    o.step()
                if ema is not None:
                    ema.update()
                total += float(loss.detach()) * n
                n_tok += n
                # a large catalogue's epoch can outlast the budget: stop mid-epoch
                if budget is not None and time.perf_counter() - started >= budget:
                    out_of_time = True
                    break
            recipe.epochs_trained = epoch
            recipe.tokens_trained += n_tok
            elapsed = time.perf_counter() - started
            recipe.step_seconds += time.perf_counter() - epoch_start
            if ema is not None:
                ema.swap()  # validate, keep and report the averaged weights
            t_val = time.perf_counter()
            recipe._z_cache = None  # weights moved: item factors are stale
            score = (
                validate(recipe, self.val_users, self.histories) if validating else -float(total)
            )
            recipe.validation_seconds += time.perf_counter() - t_val
            if validating:
                curve.append(round(score, 5))
            log.info(
                "epoch",
                epoch=epoch,
                complete=not out_of_time,
                loss=round(total / max(n_tok, 1), 4),
                val_ndcg10=round(score, 4),
                lr=round(base_lr[0][0] * f, 6),
                seconds=round(elapsed, 1),
            )
            if self.options.on_epoch is not None:
                # the callback (a benchmark's test evaluation) is not training: off the clock
                t_cb = time.perf_counter()
                self.options.on_epoch(recipe, epoch, elapsed)
                started += time.perf_counter() - t_cb
            if not validating:
                best_epoch = epoch  # no validation: the last epoch is kept
            elif score > best:
                best, bad, best_epoch = score, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
            if ema is not None:
                ema.swap()  # back to the raw weights to train on
            recipe._z_cache = None
            if out_of_time or (budget is not None and elapsed >= budget):
                reason = "budget"
                break
            if validating and bad >= int(hp["patience"]):
                reason = "early_stop"
                break
        if validating and best_state is not None:
            model.load_state_dict(best_state)
            recipe.best_validation = best
        elif ema is not None:
            ema.swap()  # no validation: the last epoch's average is kept
        recipe._z_cache = None
        model.eval()
        # Still rising: stopped by the budget or the epoch cap while the best epoch was one of
        # the last two, i.e. more training would probably have paid.
        rising = validating and reason != "early_stop" and epoch - best_epoch <= 1
        report = {
            "stop_reason": reason,
            "epochs": epoch,
            "best_epoch": best_epoch,
            "max_epochs": epochs,
            "budget_s": None if budget is None or math.isinf(budget) else round(budget, 1),
            "seconds": round(time.perf_counter() - started, 1),
            "best_validation_ndcg10": round(best, 5) if validating else None,
            "validation_still_rising": bool(rising),
            "validation_curve": curve,
            # where the schedule had brought the learning rate when training stopped
            "final_learning_rate": float(base_lr[0][0] * f) if base_lr[0] else None,
        }
        log.info("training stopped", **{k: v for k, v in report.items() if k != "validation_curve"})
        return report


def validate(recipe: UserPersonalization, val_users, histories) -> float:
    """NDCG@10 of each validation user's held-out last item (seen items excluded), in
    user blocks so a large catalogue never needs a users × items matrix."""
    model = recipe.model
    assert model is not None
    block = max(1, min(512, SCORE_ELEMENTS // max(model.n_items, 1)))
    gains = []
    with torch.no_grad(), recipe._autocast():
        z = model.item_vectors()
    for b0 in range(0, len(val_users), block):
        users = val_users[b0 : b0 + block]
        inputs = [histories[u][:-1] for u in users]
        targets = np.array([histories[u][-1] for u in users])
        scores = recipe._scores(inputs, z)
        for r, h in enumerate(inputs):
            scores[r, h[h != targets[r]]] = -np.inf  # seen items out, but never the answer
        target_scores = scores[np.arange(len(targets)), targets]
        rank = (scores > target_scores[:, None]).sum(axis=1)
        gains.append(np.where(rank < 10, 1.0 / np.log2(rank + 2), 0.0))
    return float(np.concatenate(gains).mean())
