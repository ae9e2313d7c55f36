#!/usr/bin/env python3
"""Caption counts of `traverse dataset` folders, and each family's share of the U-Net's draws when captions are
balanced over all families pooled (what `train-mini --unet-caption-balance B` did before it kept each family's
share: a latent drawn with weight (its caption's count)^-B).

    traverse dataset --kind chest --n 3000 --seed 0 --size 32 --out /tmp/ds-chest
    traverse dataset --kind derm  --n 3000 --seed 0 --size 32 --out /tmp/ds-derm
    python3 scripts/caption_shares.py 0.5 /tmp/ds-chest /tmp/ds-derm

(Seed 0 with 3000 per family gives the 6000-phantom training pool's phantoms.) Standard library only.
"""
import collections
import json
import sys


def main(args):
    if len(args) < 2:
        sys.exit(__doc__)
    balance, folders = float(args[0]), args[1:]
    counts = {}
    for folder in folders:
        with open(f"{folder}/metadata.jsonl") as f:
            counts[folder] = collections.Counter(json.loads(line)["caption"] for line in f)
    mass = {folder: sum(n ** (1 - balance) for n in c.values()) for folder, c in counts.items()}
    total = sum(mass.values())
    print(f"| folder | phantoms | captions | share of draws, unbalanced | pooled balance {balance} |")
    print("|---|---|---|---|---|")
    phantoms = sum(sum(c.values()) for c in counts.values())
    for folder, c in counts.items():
        print(f"| {folder} | {sum(c.values())} | {len(c)} | {sum(c.values()) / phantoms:.2f} | {mass[folder] / total:.2f} |")
    for folder, c in counts.items():
        print(f"\n{folder}, captions from the rarest:")
        for caption, n in sorted(c.items(), key=lambda item: (item[1], item[0])):
            print(f"{n:6d}  {caption}")


if __name__ == "__main__":
    main(sys.argv[1:])
