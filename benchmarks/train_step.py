"""Seconds per training step of each shipped family on this CPU, in both memory layouts.

Usage: python benchmarks/train_step.py [--threads 2] [--batch 64] [--size 160] [--steps 8]
One fine-tuning step (forward, loss, backward, AdamW) on a random batch, every block trainable,
median over `--steps` after two warm-up steps. The trainer runs its models channels-last
(src/facetell/train/trainer.py); this shows what that layout buys over the default contiguous one.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from facetell.models import create_model

FAMILIES = ("mobilenet_v2", "efficientnet_lite0")


def step_seconds(
    family: str, layout: torch.memory_format, batch: int, size: int, steps: int
) -> list[float]:
    torch.manual_seed(0)
    model = create_model(family, pretrained=False).to(memory_format=layout).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, size, size).contiguous(memory_format=layout)
    targets = torch.randint(0, 2, (batch,)).float()
    times = []
    for _ in range(steps + 2):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.binary_cross_entropy_with_logits(model(images), targets)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return times[2:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch} at {args.size} px, {args.threads} torch threads")
    layouts = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}
    for family in FAMILIES:
        medians = {}
        for name, layout in layouts.items():
            times = step_seconds(family, layout, args.batch, args.size, args.steps)
            medians[name] = statistics.median(times)
            print(
                f"{family:<20} {name:<14} median {medians[name]:6.2f} s/step   "
                f"min {min(times):6.2f}   {args.batch / medians[name]:6.1f} images/s"
            )
        speed_up = medians["contiguous"] / medians["channels-last"]
        print(f"{family:<20} channels-last speed-up x{speed_up:.2f}")


if __name__ == "__main__":
    main()
