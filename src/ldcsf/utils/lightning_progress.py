"""Lightning's progress bar, or the same progress as lines in a log file (see `utils.progress`)."""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import TQDMProgressBar

from .progress import LineTqdm, progress_mode


class LineProgressBar(TQDMProgressBar):
    """Training, validation and prediction progress as `LineTqdm` lines (TQDMProgressBar's logic)."""

    def _bar(self, desc: str, leave: bool = True, smoothing: float = 0.3) -> LineTqdm:
        return LineTqdm(desc=desc, disable=self.is_disabled, leave=leave, file=sys.stderr, smoothing=smoothing)

    def init_sanity_tqdm(self) -> LineTqdm:
        return self._bar(self.sanity_check_description, leave=False)

    def init_train_tqdm(self) -> LineTqdm:
        return self._bar(self.train_description, smoothing=0)

    def init_predict_tqdm(self) -> LineTqdm:
        return self._bar(self.predict_description, smoothing=0)

    def init_validation_tqdm(self) -> LineTqdm:
        return self._bar(self.validation_description, leave=self.trainer.state.fn == "validate")

    def init_test_tqdm(self) -> LineTqdm:
        return self._bar("Testing")


def progress_bar_callback() -> TQDMProgressBar:
    """Lightning's bar in a terminal, `LineProgressBar` elsewhere (`progress_mode`)."""
    return TQDMProgressBar() if progress_mode() == "bars" else LineProgressBar()
