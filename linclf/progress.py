"""Progress bars: a tqdm bar on stderr when asked for, else nothing (tqdm imported only then)."""
from __future__ import annotations

__all__ = ["Bar"]


class Bar:
    """A counting progress bar with a postfix of named numbers; a no-op unless ``enabled``."""

    def __init__(self, enabled: bool, total: int, initial: int = 0, desc: str = "", unit: str = "it"):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=False)

    def update(self, n: int = 1, **postfix: float | None) -> None:
        """Count ``n`` more; show the given numbers (None ones are left out) beside the bar."""
        if self.bar is not None:
            shown = {k: f"{v:.4g}" for k, v in postfix.items() if v is not None}
            if shown:
                self.bar.set_postfix(shown, refresh=False)
            self.bar.update(n)

    def close(self) -> None:
        """Remove the bar."""
        if self.bar is not None:
            self.bar.close()
