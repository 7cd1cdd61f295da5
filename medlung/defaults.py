"""The defaults a user can change, in one place: outputs, conventions, devices, limits, the node's settings.

The command line, the Python API, the bundle's configs, the Dask driver and
``medlung serve`` all take their defaults from here (through
:class:`medlung.pipeline.settings.PredictSettings` and
:class:`medlung.services.node.ServeConfig`), so a default is changed in one
line. What a trained model brings with it (network, working grid, intensity
rule, overlap, smallest lung) is the model's plan, with its own defaults in
:mod:`medlung.plans`; the quality check's rules and their thresholds are in
:mod:`medlung.quality`, each with its reasoning.

This module imports nothing of medlung and no third-party package.
"""

from __future__ import annotations

# --- outputs -----------------------------------------------------------------------------------------
#: Everything ``medlung predict`` can write for a film (``--format``), in the order they are written.
OUTPUT_FORMATS = ("seg", "sr", "png", "nifti", "overlay", "mha")
#: What it writes when not told (seg and sr only for DICOM films; mha on request).
DEFAULT_FORMATS = ("seg", "sr", "png", "nifti", "overlay")
#: The formats written only for DICOM films, which they reference: the DICOM-SEG and the DICOM SR of its measurements.
DICOM_FORMATS = ("seg", "sr")
#: DICOM-SEG forms (``--seg-syntax``): uncompressed Explicit VR Little Endian, opened by every client tested, or
#: JPEG 2000 Lossless for archives read with highdicom/pydicom (``lossless`` is its older name).
SEG_SYNTAXES = ("uncompressed", "jpeg2000", "lossless")
DEFAULT_SEG_SYNTAX = "uncompressed"

# --- lungs ---------------------------------------------------------------------------------------------
#: The two lung conventions (docs/design.md): ``field`` is the radiographic lung field bounded by the heart and
#: mediastinum; ``anatomical`` is the whole lung, continuing behind the heart. Opacified lung is lung in both.
CONVENTIONS = ("field", "anatomical")
#: The convention drawn unless asked otherwise.
DEFAULT_CONVENTION = "field"

# --- running -------------------------------------------------------------------------------------------
#: Where the network runs: ``auto`` takes a CUDA GPU when there is one.
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_DEVICE = "auto"
#: Films one process works on at once (``--workers``); with 1 the next film is read while one is segmented.
DEFAULT_WORKERS = 1
#: Windows of the sliding window evaluated in one forward pass.
DEFAULT_SW_BATCH_SIZE = 4
#: Precision of the network: ``auto`` is bfloat16 where the hardware has it, else float32.
PRECISIONS = ("auto", "bf16", "fp32")
DEFAULT_PRECISION = "auto"

#: The estimated Dice of each mask (``--dice-estimate``): ``fast`` from the one network pass (a few ms), ``perturbed``
#: also from the film flipped, shifted and zoomed out (three more network passes), or ``off``.
DICE_ESTIMATES = ("fast", "perturbed", "off")
DEFAULT_DICE_ESTIMATE = "fast"

# --- limits --------------------------------------------------------------------------------------------
#: Films declaring more pixels (rows x cols) than this are refused before decoding (``--max-pixels``): 8000 x 8000,
#: twice the largest detector in use (a 4020x4892 Montgomery film has 19.7 M).
DEFAULT_MAX_PIXELS = 64_000_000
#: How films are decoded (``--decode``): only at the resolution the network and the overlay need, or every pixel.
DECODE_MODES = ("reduced", "full")
DEFAULT_DECODE = "reduced"

# --- the DICOM node (medlung serve) --------------------------------------------------------------------
DEFAULT_AE_TITLE = "MEDLUNG"
DEFAULT_PORT = 11112
#: Films received but not yet segmented before C-STORE answers 0xA700 (out of resources).
DEFAULT_MAX_QUEUE = 100
#: C-STOREs one association may make; later ones are refused with 0xA702.
DEFAULT_MAX_FILMS_PER_ASSOCIATION = 500
#: Largest film accepted, MB (10**6 bytes; a 4020x4892 16-bit film is 39 MB).
DEFAULT_MAX_FILM_MB = 256.0
#: Disk space, MB, that must stay free on the work folder's file system.
DEFAULT_MIN_FREE_MB = 1024.0
#: Connections (associations, TLS handshakes) one peer address may hold open at once.
DEFAULT_MAX_ASSOCIATIONS_PER_HOST = 4
#: Attempts at segmenting one film that may outlive a crash of the node before it goes to failed/.
DEFAULT_MAX_ATTEMPTS = 2
#: Longest wait, seconds, between delivery attempts while ``--forward`` is unreachable.
DEFAULT_RESEND_INTERVAL_S = 60.0
#: Seconds allowed for connecting to ``--forward`` and for each of its answers.
DEFAULT_SEND_TIMEOUT_S = 30.0
