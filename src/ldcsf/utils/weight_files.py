"""The one-line refusal of a weights file that `torch.load(weights_only=True)` would not load.

Both the model factory (backbone weights files) and the checkpoint reader use it, so it lives
here, below both.
"""

from __future__ import annotations

from pathlib import Path


def torch_load_refusal(path: Path, err: BaseException, what: str = "checkpoint") -> ValueError:
    """One line for a file `torch.load(weights_only=True)` would not load.

    torch's own message advises `weights_only=False`, i.e. running the file's code: it is never
    repeated. A file that names Python objects to rebuild is refused as such; anything else is
    simply not a readable file.
    """
    text = str(err)
    if "Unsupported global" in text or "GLOBAL " in text:
        return ValueError(f"{path}: refused: it holds pickled Python objects besides weights, "
                          "and loading those could run code")
    return ValueError(f"{path}: not a readable {what} (not a PyTorch file, or damaged or truncated)")
