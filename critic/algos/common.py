"""Small pieces the algorithm files share (optimizer construction, LR schedule)."""

from __future__ import annotations

import torch

from critic.config import Config, OnPolicyConfig
from critic.optim import flatten_


def make_optimizer(module: torch.nn.Module, cfg: OnPolicyConfig) -> torch.optim.Optimizer:
    """Adam (fused) or RMSprop over the module's parameters, flattened into one tensor."""
    return optimizer_for([flatten_(module.parameters())], cfg)


def optimizer_for(params: list[torch.Tensor], cfg: OnPolicyConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` asks for over ``params`` (A3C workers build theirs over shared ones)."""
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.learning_rate, alpha=cfg.rmsprop_alpha, eps=cfg.optim_eps,
                                   foreach=True)
    return adam(params, cfg.learning_rate, cfg, eps=cfg.optim_eps)


def adam(params: list[torch.Tensor], lr: float, cfg: Config, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with the config's ``adam_betas``, fused where the device has the kernel."""
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, betas=tuple(cfg.adam_betas), eps=eps, fused=fused)


def apply_lr_schedule(opt: torch.optim.Optimizer, cfg: OnPolicyConfig, env_steps: int,
                      span: tuple[int, int]) -> None:
    """Linear annealing from learning_rate to 0 over the current learn() call."""
    if cfg.lr_schedule != "linear":
        return
    start, end = span
    frac = 1.0 - (env_steps - start) / max(end - start, 1)
    for g in opt.param_groups:
        g["lr"] = cfg.learning_rate * max(frac, 0.0)



def worker_hparams(cfg: OnPolicyConfig, config_cls: type, worker_id: int, generation: int) -> dict:
    """The config of one worker's in-process agent (A3C worker, Ray sampler): the fields of
    ``config_cls``, its own seed (new envs after each restart), one torch thread, no backend."""
    names = set(config_cls.field_names())
    data = {k: v for k, v in cfg.to_dict().items() if k in names}
    data["seed"] = cfg.seed + 1000 * (worker_id + 1) + 100_003 * generation
    data["torch_threads"] = 1
    data.update(backend="local", workers=1, address=None)
    if "batch_size" in data:  # a sampler never updates; its own rollout may be smaller than the learner's
        data["batch_size"] = min(data["batch_size"], data["n_steps"] * data["num_envs"])
    return data
