"""What an outcome cell's accuracies say: ``id_gain``, ``id_gain_norm`` and ``ood_change`` (DESIGN.md, "Outcome").

* ``id_gain = acc_ft(target) - acc_zs(target)``
* ``id_gain_norm = id_gain / (1 - acc_zs(target))`` (gain over zero-shot error; None at acc_zs = 1)
* ``ood_change`` = mean over the other tasks of ``acc_ft - acc_zs`` (forgetting when negative),
  leaving out tasks whose images come from the target's dataset (``Task.dataset``: CIFAR-10's
  animal and vehicle subsets for a CIFAR-10 target), which fine-tuning teaches rather than
  makes it forget; their changes stay in ``ood_changes`` and are listed in ``ood_excluded``.

An accuracy that does not exist is None (an image-only encoder has no zero-shot accuracy, and
after fine-tuning no classifier for the other tasks' classes): every delta that needs it is then
None too, never a number made up for it.

The IIMM paper (arXiv 2407.15731) measures the same gain, normalised gain and forgetting.
Torch-free: the leaderboard reads stored cells through this module.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from estimators.errors import InvalidInput
from tasks import dataset_of


def _change(after, before):
    return None if after is None or before is None else after - before


def _all_present(values: list) -> list | None:
    """``values``, or None when there are none or one of them does not exist (None)."""
    return None if not values or any(v is None for v in values) else values


def deltas(acc_zs: dict[str, float | None], acc_ft: dict[str, float | None], target: str, related=()) -> dict:
    """``id_gain``, ``id_gain_norm``, per-task ``ood_changes`` and their mean ``ood_change`` over
    the other tasks not in ``related`` (those sharing the target's images, ``ood_excluded``).
    A None accuracy makes the deltas that need it None."""
    gain = _change(acc_ft[target], acc_zs[target])
    changes = {t: _change(acc_ft[t], acc_zs[t]) for t in acc_zs if t != target}
    counted = _all_present([v for t, v in changes.items() if t not in related])
    return {"id_gain": gain, "id_gain_norm": gain / (1 - acc_zs[target]) if gain is not None and acc_zs[target] < 1
            else None, "ood_changes": changes, "ood_excluded": sorted(set(related) & set(changes)),
            "ood_change": float(np.mean(counted)) if counted else None}


def same_dataset(target: str, tasks) -> list[str]:
    """The tasks other than ``target`` whose images come from its dataset (``tasks.dataset_of``)."""
    dataset = dataset_of(target)
    return [t for t in tasks if t != target and dataset_of(t) == dataset]


#: Largest sample size assumed when a stored accuracy comes without its ``n_test``.
MAX_DENOMINATOR = 10_000


def exact_fraction(value: float, n: int | None = None) -> Fraction:
    """``value`` as the exact fraction it was computed as: ``round(value * n) / n`` for an accuracy
    over ``n`` items, else the nearest fraction with denominator <= ``MAX_DENOMINATOR``. Raises
    InvalidInput when ``value`` is not within 1e-9 of such a fraction (10 significant digits suffice:
    two such fractions differ by at least 1e-8)."""
    exact = Fraction(round(value * n), n) if n else Fraction(value).limit_denominator(MAX_DENOMINATOR)
    if not abs(float(exact) - value) <= 1e-9:
        raise InvalidInput(f"{value!r} is not a count over {n or f'at most {MAX_DENOMINATOR} items'}")
    return exact


def exact_deltas(record: dict) -> dict:
    """The deltas of a stored cell as exact fractions of its test-sample counts, so equal deltas
    compare equal (0.534 - 0.440 and 0.182 - 0.088 are both 47/500).

    Each accuracy is ``correct / n`` with ``n`` from the cell's ``n_test`` (a cell without it: the
    smallest denominator that fits). Returns ``n_test``, ``correct_zs``, ``correct_ft`` (target counts),
    ``acc_zs``, ``acc_ft``, ``id_gain``, ``id_gain_norm`` (None at acc_zs = 1), per-task
    ``ood_changes``, ``ood_excluded`` (tasks of the target's dataset), ``ood_change`` (their mean over
    the other tasks; None without any) and ``ood_den``: tasks counted x lcm of their ``n``, so
    ``ood_change * ood_den`` is an integer. An accuracy stored as null (it does not exist: an
    image-only encoder's zero-shot accuracy) stays None, and so does every delta and count that
    needs it."""
    target, sizes = record["target"], record.get("n_test", {})

    def exact(value, t):
        return None if value is None else exact_fraction(value, sizes.get(t))

    try:
        zs = {t: exact(v, t) for t, v in record["acc_zs"].items()}
        ft = {t: exact(record["acc_ft"][t], t) for t in zs}
    except InvalidInput as err:
        cell = "/".join(str(record.get(k, "?")) for k in ("encoder", "method", "target", "seed"))
        raise InvalidInput(f"outcome cell {cell}: an accuracy {err}") from None
    n = {t: sizes.get(t) or math.lcm(*(a.denominator for a in (zs[t], ft[t]) if a is not None)) for t in zs}
    changes = {t: _change(ft[t], zs[t]) for t in zs if t != target}
    excluded = sorted(set(same_dataset(target, changes)))
    counted = [t for t in changes if t not in excluded]
    whole = _all_present([changes[t] for t in counted])
    gain = _change(ft[target], zs[target])

    def correct(acc):
        return None if acc is None else int(acc * n[target])

    return {"n_test": n[target], "correct_zs": correct(zs[target]), "correct_ft": correct(ft[target]),
            "acc_zs": zs[target], "acc_ft": ft[target], "id_gain": gain,
            "id_gain_norm": gain / (1 - zs[target]) if gain is not None and zs[target] < 1 else None,
            "ood_changes": changes, "ood_excluded": excluded,
            "ood_change": sum(whole, Fraction(0)) / len(whole) if whole else None,
            "ood_den": len(counted) * math.lcm(*(n[t] for t in counted)) if whole else None}


def cell_deltas(record: dict) -> dict:
    """``exact_deltas`` of a stored cell as floats (the nearest double of each exact value)."""
    def as_float(v):
        return None if v is None else float(v)

    exact = exact_deltas(record)
    return {**{k: as_float(exact[k]) for k in ("id_gain", "id_gain_norm", "ood_change")},
            "ood_changes": {t: as_float(v) for t, v in exact["ood_changes"].items()},
            "ood_excluded": exact["ood_excluded"]}
