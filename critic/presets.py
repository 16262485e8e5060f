"""Presets: tuned hyper-parameters per (algorithm, environment), shipped as YAML in ``critic/presets/``.

Read here (by the CLI, the tests and the benchmarks alike) so that nothing needs the CLI to
know what a preset holds.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from critic.config import ConfigError, load_yaml

KEYS = ("algo", "env_id", "steps", "eval_every", "eval_episodes", "hparams")


def preset_dir() -> Path:
    return Path(str(resources.files("critic") / "presets"))


def list_presets() -> list[Path]:
    return sorted(preset_dir().glob("*.yaml"))


def find_preset(name: str, algo: str) -> Path:
    """A preset by path, by full name (``ppo_cartpole``) or by short name for ``algo``."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    for cand in (f"{name}.yaml", f"{algo}_{name}.yaml"):
        f = preset_dir() / cand
        if f.is_file():
            return f
    names = [f.stem for f in list_presets()]
    mine = [n for n in names if n.startswith(algo + "_")]
    raise ConfigError(f"unknown preset '{name}' for {algo} (available: {', '.join(mine) or 'none'}; "
                      "or give a path to a YAML file)")


def read_preset(path: Path) -> dict[str, Any]:
    """A preset's contents, its keys checked (``hparams`` are checked by the algorithm's config)."""
    data = load_yaml(path)
    unknown = set(data) - set(KEYS)
    if unknown:
        raise ConfigError(f"preset {path} has unknown keys: {', '.join(sorted(unknown))} "
                          f"(allowed: {', '.join(KEYS)})")
    if not isinstance(data.get("hparams", {}), dict):
        raise ConfigError(f"preset {path}: 'hparams' must be a mapping")
    return data


def load_preset(name: str, algo: str) -> tuple[Path, dict[str, Any]]:
    """``find_preset`` then ``read_preset``: the preset's path and contents."""
    path = find_preset(name, algo)
    return path, read_preset(path)
