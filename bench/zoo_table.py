"""Measure every zoo model and print the docs/models.md table.

Builds each model with random weights, converts it to int8 TFLite (cached by
``describe``) and checks it against every board profile.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/zoo_table.py [--frames 49 --coeffs 10 --classes 12]
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=49)
    ap.add_argument("--coeffs", type=int, default=10)
    ap.add_argument("--classes", type=int, default=12)
    args = ap.parse_args()

    from kws_kit.boards import board_names, load_profile
    from kws_kit.budget import check_fits, pick_model
    from kws_kit.models import DEFAULT_MODEL, describe, ranked_names

    shape = (args.frames, args.coeffs)
    boards = [load_profile(b) for b in board_names()]
    print(f"input {shape[0]}x{shape[1]}, {args.classes} classes, int8 (random weights)\n")
    print("| model | params | MACs | int8 flash (B) | weights (B) | arena est. (B) | TFLM arena (B) | kws arena, 32-bit (B) | fits |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in reversed(ranked_names()):
        d = describe(name, shape, args.classes)
        fits = []
        for profile in boards:
            report = check_fits(d, profile)
            if report.fits:
                fits.append(profile["name"] + ("" if report.fast_enough else " (slow)"))
        label = f"`{name}`" + (" (default)" if name == DEFAULT_MODEL else "")
        print(f"| {label} | {d['params']:,} | {d['macs']:,} | {d['flash_bytes']:,} | {d['param_bytes']:,} | "
              f"{d['arena_bytes']:,} | {d['tflm_arena_bytes'] or 0:,} | {d['kws_arena_bytes']:,} | "
              f"{', '.join(fits) or 'none'} |")
    print()
    for profile in boards:
        name = pick_model(profile, shape, args.classes)
        report = check_fits(describe(name, shape, args.classes), profile)
        print(f"- pick_model({profile['name']}) -> `{name}`: {report.summary()}")


if __name__ == "__main__":
    main()
