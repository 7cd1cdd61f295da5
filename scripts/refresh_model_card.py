"""Write the generated sections of a bundle's model card again from its own configs (no training, no export).

The ``## Model`` and ``## Inputs and outputs`` sections of ``BUNDLE/docs/README.md``
are rendered by :mod:`medlung.bundle.model_description` from the bundle's
``configs/inference.json`` (the plan) and ``configs/metadata.json``, the same
generator ``medlung export`` uses; the rest of the card is kept. Usage::

    python scripts/refresh_model_card.py bundles/medlung_cxr_lung
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medlung.bundle.model_description import refresh_bundle_card


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, nargs="?", default=Path("bundles/medlung_cxr_lung"), help="bundle folder")
    args = parser.parse_args(argv)
    print(f"wrote the generated sections of {refresh_bundle_card(args.bundle)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
