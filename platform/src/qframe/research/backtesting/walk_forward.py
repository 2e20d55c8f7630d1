"""Walk-forward splits: choose parameters on a train window, score them on the window after it.

Layout for ``n_splits`` rolling splits (``anchored=True`` keeps every train window starting at 0):

    | train 0 | purge | test 0 |
              | train 1 | purge | test 1 |
                        | train 2 | purge | test 2 |

Test windows follow each other without overlap and end at or before the last bar; the ``purge``
bars between a train window and its test window belong to neither, so nothing computed near the
boundary leaks from test into train. All windows are half-open bar index ranges.
"""

from __future__ import annotations

from qframe.research.backtesting.types import SplitWindow

MIN_WINDOW_BARS = 2


class WalkForwardError(ValueError):
    """The series is too short for the requested splits, or a size is not positive."""


def walk_forward_splits(
    n_bars: int,
    n_splits: int,
    *,
    train_size: int | None = None,
    test_size: int | None = None,
    purge: int = 0,
    anchored: bool = False,
) -> list[SplitWindow]:
    """``n_splits`` consecutive (train, test) windows over ``n_bars`` bars.

    Sizes left out are derived: with neither, each test window is ``(n_bars - purge) // (n_splits + 2)``
    bars and the first train window takes the rest (at least two test windows long); with one, the other
    fills the series.
    """
    if n_splits < 1:
        raise WalkForwardError(f"n_splits must be >= 1, got {n_splits}")
    if purge < 0:
        raise WalkForwardError(f"purge must be >= 0 bars, got {purge}")
    usable = n_bars - purge
    if train_size is None:
        if test_size is None:
            test_size = usable // (n_splits + 2)
        train_size = usable - n_splits * test_size
    elif test_size is None:
        test_size = (usable - train_size) // n_splits
    if train_size < MIN_WINDOW_BARS or test_size < MIN_WINDOW_BARS:
        raise WalkForwardError(
            f"{n_bars} bars cannot hold {n_splits} split(s) with train_size={train_size}, test_size={test_size}, "
            f"purge={purge}: each window needs at least {MIN_WINDOW_BARS} bars; use fewer splits or more data"
        )
    needed = train_size + purge + n_splits * test_size
    if needed > n_bars:
        raise WalkForwardError(
            f"{n_splits} split(s) need train_size + purge + n_splits * test_size = {train_size} + {purge} + "
            f"{n_splits} * {test_size} = {needed} bars but the series has {n_bars}; shrink the windows or splits"
        )
    splits = []
    for k in range(n_splits):
        test_start = train_size + purge + k * test_size
        train_end = test_start - purge
        splits.append(
            SplitWindow(
                split_id=k,
                train_start=0 if anchored else train_end - train_size,
                train_end=train_end,
                test_start=test_start,
                test_end=test_start + test_size,
            )
        )
    return splits
