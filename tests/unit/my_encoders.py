"""Encoder factories for test_own_networks.py: module-level, so a saved model can name them."""

import torch
from torch import nn


def small_mlp(space):
    """Features of vector observations: a 24-unit ReLU layer (with a LayerNorm, to check that
    every layer a body holds is applied)."""
    return nn.Sequential(nn.Linear(int(space.shape[0]), 24), nn.LayerNorm(24), nn.ReLU())


def tiny_cnn(space):
    """Features of (C, H, W) uint8 images."""
    return nn.Sequential(_Scale(), nn.Conv2d(space.shape[0], 4, 3, stride=2), nn.ReLU(), nn.Flatten())


class _Scale(nn.Module):
    def forward(self, x):
        return x.float() / 255.0


def wrong_rank(space):
    return nn.Identity()  # images stay [B, C, H, W]: not features


def not_a_module(space):
    return torch.zeros(3)
