"""lima_repro: reproduce "LIMA: Less Is More for Alignment" (Zhou et al., 2023) as a reproducible research package.

Stages (each `run_<stage>(config) -> Path` writes one folder of a run directory):
curate -> train -> generate (-> judge -> analyse -> figures).
"""

from .config import Config, load_config

__version__ = "0.1.0"
__all__ = ["Config", "load_config", "__version__"]
