"""`ldcsf models`: list the model variants with their sizes."""

from __future__ import annotations

from .common import format_table


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list model variants and baselines with parameter counts")
    parser.add_argument("--flops", action="store_true", help="also count GFLOPs per image (slower)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..models import describe_model, list_models
    from ..models.profile import model_profile

    rows = []
    for name in list_models():
        profile = model_profile(name, flops=args.flops)
        rows.append([name, f"{profile.params / 1e6:.2f}M", f"{profile.input_size}px"]
                    + ([f"{profile.gflops:.2f}"] if args.flops else []) + [describe_model(name)])
    header = ["model", "params", "input"] + (["GFLOPs"] if args.flops else []) + ["description"]
    print(format_table(header, rows))
    print()
    print(shipped_table())
    return 0


def shipped_table() -> str:
    """The trained model inside the package (used when `ldcsf slide`/`predict` get no --checkpoint)."""
    from ..shipped import read_card

    try:
        card = read_card()
    except (OSError, ValueError) as err:
        return f"shipped model: none ({err})"
    summary = card.get("test", {}).get("summary", {})
    m_ap = summary.get("mAP")
    row = [card["name"], card["version"], f"{card['backbone']} {card['input_size']}px",
           f"{card['mpp']:.3f}", ",".join(card["labels"]), "-" if m_ap is None else f"{m_ap:.3f}"]
    return "shipped (the default of slide, predict and evaluate; docs/model_card.md)\n" + format_table(
        ["shipped model", "version", "backbone", "µm/px", "labels", "test mAP"], [row])
