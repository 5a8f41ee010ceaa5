"""Finishing steps for the shipped bundle (called by bench/train_shipped.sh).

    python bench/shipped_bundle.py set-threshold BUNDLE VALIDATION_REPORT_JSON
    python bench/shipped_bundle.py card BUNDLE --validation VALIDATION_REPORT_JSON --recipe TEXT

``set-threshold`` writes the operating point that ``kws-kit eval --split validation
--target-fa N`` found (fewest misses with at most N false accepts per hour on the
validation stream) into the bundle's ``recognizer.json``: the threshold is chosen on
validation speakers, never on the test split it is then reported on.

``card`` rewrites ``MODEL_CARD.md``: the card ``kws-kit export`` writes (with the
recogniser block as shipped), followed by what ``kws-kit eval`` measured on the test
split (``BUNDLE/eval``: real speech only; ``BUNDLE/eval_mixed``: real + synthetic),
how the threshold was chosen and how to reproduce the model. It also makes the eval
reports' bundle path relative to the repository and the dataset paths relative to the
script's WORK_DIR, so nothing machine-specific is shipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def set_threshold(bundle: Path, validation_report: Path) -> float:
    from kws_kit import atomic

    stream = _read(validation_report).get("stream")
    if not stream or stream.get("threshold_for_target") is None:
        sys.exit(f"{validation_report}: no threshold met the target false-accept rate on the validation stream")
    threshold = float(stream["threshold_for_target"])
    rec = _read(bundle / "recognizer.json")
    rec["detection_threshold"] = threshold
    atomic.write_text(bundle / "recognizer.json", json.dumps(rec, indent=2) + "\n")
    print(f"{bundle}/recognizer.json: detection_threshold {threshold} "
          f"(validation: <= {stream['target_fa_per_hour']} FA/h)")
    return threshold


def _strip_machine_paths(bundle: Path, work_dir: Path) -> None:
    """Eval reports and metadata.json name the bundle and the datasets by absolute path; ship
    them with the bundle relative to the repository and the datasets relative to WORK_DIR."""
    from kws_kit import atomic

    bundle_abs = str(bundle.resolve())
    try:
        bundle_rel = str(bundle.resolve().relative_to(REPO))
    except ValueError:
        bundle_rel = bundle.name
    swaps = [(bundle_abs, bundle_rel), (str(work_dir.resolve()), "WORK_DIR")]
    for path in [bundle / "metadata.json", *bundle.glob("eval*/report.json"), *bundle.glob("eval*/report.md")]:
        text = original = path.read_text()
        for absolute, relative in swaps:
            text = text.replace(absolute, relative)
        if text != original:
            atomic.write_text(path, text)


def _sweep_rows(stream: dict, marks: set[float]) -> list[str]:
    rows = ["| threshold | false accepts / h | keywords missed |", "|---:|---:|---:|"]
    for threshold, fa, frr in stream["sweep"]:
        bold = "**" if round(threshold, 3) in marks else ""
        rows.append(f"| {bold}{threshold:.2f}{bold} | {fa:.0f} | {100 * frr:.1f} % |")
    return rows


def card(bundle: Path, validation_report: Path, recipe: str) -> None:
    from kws_kit import atomic
    from kws_kit.export import model_card

    # bench/train_shipped.sh writes the validation report to WORK_DIR/eval_validation/
    _strip_machine_paths(bundle, Path(validation_report).resolve().parent.parent)
    meta = _read(bundle / "metadata.json")
    rec = _read(bundle / "recognizer.json")
    real = _read(bundle / "eval" / "report.json")
    mixed = _read(bundle / "eval_mixed" / "report.json")
    val = _read(validation_report)
    # eval_mixed is the export's own test split: its numbers must be the export's.
    if abs(mixed["int8"]["accuracy"] - meta["accuracy"]["int8"]) > 1e-9:
        sys.exit("eval_mixed/report.json does not match metadata.json's int8 accuracy: "
                 "evaluate the dataset the bundle was trained from")
    text = model_card(meta, rec, mixed["float"], mixed["int8"]).rstrip("\n")
    threshold = rec["detection_threshold"]
    vs, rs, ms = val["stream"], real["stream"], mixed["stream"]
    lines = [
        "",
        "## Measured with `kws-kit eval` (test split, held-out speakers)",
        "",
        "The accuracy above is on the test split of the training dataset, which mixes real "
        "Speech Commands speakers and synthetic espeak-ng voices. Real speech alone (`eval/`, "
        f"{real['clips']} clips from {real['speakers']} real speakers, none in training or validation):",
        "",
        "| | float | int8 |",
        "|---|---|---|",
        f"| clip accuracy, real speech only | {real['float']['accuracy']:.4f} | {real['int8']['accuracy']:.4f} |",
        f"| clip accuracy, real + synthetic (`eval_mixed/`) | {mixed['float']['accuracy']:.4f} | {mixed['int8']['accuracy']:.4f} |",
        "",
        "Streaming (`kws-kit eval`, int8 model, the device's recogniser): a "
        f"{rs['duration_hours']:.0f}-hour stream of held-out background noise with a test-split keyword "
        "every 4-8 s and a test-split non-keyword word every 6-12 s (about 600 keywords and 400 other "
        "words an hour, at 5-20 dB SNR). That is far denser speech than a room usually hears, so treat "
        "false accepts per hour as a stress-test figure, for comparing models and thresholds.",
        "",
        f"| at the shipped threshold {threshold} | false accepts / h (95 % upper bound) | keywords missed (FRR) |",
        "|---|---:|---:|",
        f"| real speech only (`eval/`) | {rs['false_accepts_per_hour']:.0f} ({rs['false_accepts_per_hour_upper95']:.0f}) "
        f"| {100 * rs['false_reject_rate']:.1f} % of {rs['events']} |",
        f"| real + synthetic (`eval_mixed/`) | {ms['false_accepts_per_hour']:.0f} ({ms['false_accepts_per_hour_upper95']:.0f}) "
        f"| {100 * ms['false_reject_rate']:.1f} % of {ms['events']} |",
        "",
        f"**How the threshold was chosen**: on the *validation* split's stream (real speech, {val['speakers']} "
        f"speakers, none in the test split), the threshold with the fewest misses at no more than "
        f"{vs['target_fa_per_hour']:g} false accepts per hour: {vs['threshold_for_target']} "
        f"(validation: {_fa_at(vs, threshold)} FA/h, {100 * _frr_at(vs, threshold):.1f} % missed). "
        "The test split was not used to choose it. Trade misses for false accepts by editing "
        "`detection_threshold` in `recognizer.json`; on the real-speech test stream:",
        "",
        *_sweep_rows(rs, {round(float(threshold), 3)}),
        "",
        "## How it was made",
        "",
        recipe,
        "",
        "Reproduce with `bash bench/train_shipped.sh` (see `models/bundles/README.md`).",
        "",
    ]
    atomic.write_text(bundle / "MODEL_CARD.md", text + "\n" + "\n".join(lines))
    print(f"wrote {bundle}/MODEL_CARD.md")


def _point(stream: dict, threshold: float):
    return min(stream["sweep"], key=lambda p: abs(p[0] - float(threshold)))


def _fa_at(stream: dict, threshold: float) -> str:
    return f"{_point(stream, threshold)[1]:.0f}"


def _frr_at(stream: dict, threshold: float) -> float:
    return float(_point(stream, threshold)[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("set-threshold")
    a.add_argument("bundle", type=Path)
    a.add_argument("validation_report", type=Path)
    c = sub.add_parser("card")
    c.add_argument("bundle", type=Path)
    c.add_argument("--validation", type=Path, required=True)
    c.add_argument("--recipe", required=True)
    args = ap.parse_args()
    if args.cmd == "set-threshold":
        set_threshold(args.bundle, args.validation_report)
    else:
        card(args.bundle, args.validation, args.recipe)


if __name__ == "__main__":
    main()
